// One alert: what crossed which threshold, where, and the flows that show it.
import { get } from '../api.js';
import { esc, sev, si, time } from '../fmt.js';
import { globalParams, link } from '../state.js';
import { evidence, evidenceBadge, facts } from './common.js';

export async function render(ctx) {
  const a = await get(`alerts/${encodeURIComponent(ctx.id)}`);
  if (!ctx.isCurrent()) return;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1><a href="${link('alerts', gp)}">Alerts</a> › ${esc(a.kind.replace(/_/g, ' '))} ${sev(a.severity)}</h1>
    <div id="evidence-badge"></div>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 12px;font-size:14px" data-testid="alert-description">${esc(a.description)}</p>
      ${facts([
        ['First', time(a.first)],
        ['Last', time(a.last)],
        ['Source', a.src + (a.src_country ? ` (${a.src_country}${a.src_asn ? ', AS' + a.src_asn : ''})` : '')],
        ['Destination', a.dst + (a.dst_country ? ` (${a.dst_country}${a.dst_asn ? ', AS' + a.dst_asn : ''})` : '')],
        ['Port', a.port ?? ''],
        ['Line', a.line],
        ['Measured', `${si(a.measured)} ${a.unit}`],
        ['Threshold', `${si(a.threshold)} ${a.unit}`],
        ['Total', a.packets == null ? '' : `${si(Number(a.packets))} packets, ${si(Number(a.bytes), 'B')}`],
        ['Key', a.key],
        ['Alert id', a.id],
        ['Version', a.version],
        ['Updated', time(a.updated_at)],
      ])}
    </div>
    <div class="panel"><h2>Evidence flows</h2>${evidence(a.evidence)}</div>`;
  await evidenceBadge(ctx.el.querySelector('#evidence-badge'), a.id);
}
