// One policy violation: the rule as it was written, the endpoints and zones, evidence.
import { get } from '../api.js';
import { bytes, esc, int, sev, time } from '../fmt.js';
import { globalParams, link } from '../state.js';
import { evidence, evidenceBadge, facts } from './common.js';

export async function render(ctx) {
  const v = await get(`violations/${encodeURIComponent(ctx.id)}`);
  if (!ctx.isCurrent()) return;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1><a href="${link('violations', gp)}">Policy violations</a> › ${esc(v.rule_name || v.rule_id)} ${sev(v.severity)}</h1>
    <div id="evidence-badge"></div>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 12px;font-size:14px">${esc(v.description)}</p>
      <h2>Rule ${esc(v.rule_id)} <span class="muted path" data-testid="rule-location">(${esc(v.rule_location)})</span></h2>
      <pre class="rule" data-testid="rule-text">${esc(v.rule_text)}</pre>
      <div style="height:12px"></div>
      ${facts([
        ['Kind', v.kind],
        ['First', time(v.first)],
        ['Last', time(v.last)],
        ['Source', `${v.src} ${v.src_zone ? '[' + v.src_zone + ']' : ''} ${v.src_country}`],
        ['Destination', `${v.dst} ${v.dst_zone ? '[' + v.dst_zone + ']' : ''} ${v.dst_country}`],
        ['Line', v.line],
        ['Action at the line', v.action === 'dropped' ? 'dropped (enforce mode)' : v.action === 'would_drop' ? 'would be dropped (monitor mode)' : 'none (reported only)'],
        ['Flows', int(v.flows)],
        ['Packets', int(v.packets)],
        ['Bytes', bytes(v.bytes)],
        ['Violation id', v.id],
      ])}
    </div>
    <div class="panel"><h2>Evidence flows</h2>${evidence(v.evidence, gp)}</div>`;
  await evidenceBadge(ctx.el.querySelector('#evidence-badge'), v.id);
}
