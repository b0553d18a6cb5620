// One policy violation: the rule as it was written, the endpoints and zones, evidence.
import { get } from '../api.js';
import { bytes, esc, int, sev, time } from '../fmt.js';
import { globalParams, link } from '../state.js';
import { described, evidence, evidenceBadge, facts } from './common.js';
import { t } from '../i18n.js';

/** A violation kind's label (the raw name in English). */
const kindLabel = (k) =>
  ({
    deny: t('deny'),
    isolation: t('isolation'),
    deny_list: t('deny_list'),
    not_allow_listed: t('not_allow_listed'),
    forbidden_port: t('forbidden_port'),
    byte_cap: t('byte_cap'),
  })[k] ?? k;

/** What the line did with the violating traffic. */
const actionLabel = (a) => (a === 'dropped' ? t('dropped (enforce mode)') : a === 'would_drop' ? t('would be dropped (monitor mode)') : t('none (reported only)'));

export async function render(ctx) {
  const v = await get(`violations/${encodeURIComponent(ctx.id)}`);
  if (!ctx.isCurrent()) return;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1><a href="${link('violations', gp)}">${t('Policy violations')}</a> › <span translate="no">${esc(v.rule_name || v.rule_id)}</span> ${sev(v.severity)}</h1>
    <div id="evidence-badge"></div>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 12px;font-size:14px">${described(
        v.description,
        t('{kind} under rule {rule}: {src} → {dst}.', {
          kind: esc(kindLabel(v.kind)),
          rule: `<span translate="no">${esc(v.rule_name || v.rule_id)}</span>`,
          src: `<span translate="no">${esc(v.src)}</span>`,
          dst: `<span translate="no">${esc(v.dst)}</span>`,
        }),
      )}</p>
      <h2>${t('Rule {id}', { id: `<span translate="no">${esc(v.rule_id)}</span>` })} <span class="muted path" data-testid="rule-location" translate="no">(${esc(v.rule_location)})</span></h2>
      <pre class="rule" data-testid="rule-text" translate="no">${esc(v.rule_text)}</pre>
      <div style="height:12px"></div>
      ${facts([
        [t('Kind'), kindLabel(v.kind)],
        [t('First'), time(v.first)],
        [t('Last'), time(v.last)],
        [t('Source'), `${v.src} ${v.src_zone ? '[' + v.src_zone + ']' : ''} ${v.src_country}`],
        [t('Destination'), `${v.dst} ${v.dst_zone ? '[' + v.dst_zone + ']' : ''} ${v.dst_country}`],
        [t('Line'), v.line],
        [t('Action at the line'), actionLabel(v.action)],
        [t('Flows'), int(v.flows)],
        [t('Packets'), int(v.packets)],
        [t('Bytes'), bytes(v.bytes)],
        [t('Violation id'), v.id],
      ])}
    </div>
    <div class="panel"><h2>${t('Evidence flows')}</h2>${evidence(v.evidence, gp)}</div>`;
  await evidenceBadge(ctx.el.querySelector('#evidence-badge'), v.id);
}
