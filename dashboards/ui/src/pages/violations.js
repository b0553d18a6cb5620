// Policy violations grouped by rule (with the rule as written), then the violations of
// the selected rule (or all), paginated.
import { get } from '../api.js';
import { bytes, esc, int, sev, sevLabel, time } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { chips, exportLinks, ipLink, pager } from './common.js';
import { t } from '../i18n.js';

const LIMIT = 50;

export async function render(ctx) {
  const p = ctx.params;
  ctx.el.innerHTML = `
    <h1>${t('Policy violations')} <span class="sub" id="pv-total"></span> <span class="export" id="pv-export"></span></h1>
    <div class="grid">
      <div class="panel"><h2>${t('Rules')}</h2><div class="rules" id="rules"></div></div>
      <div class="panel">
        <div class="toolbar"><label>${t('Severity')}</label><div class="chips" id="f-severity"></div>
          <label>IP <input id="f-ip" size="18" value="${esc(p.ip ?? '')}"></label><button id="f-apply">${t('Apply')}</button>
          ${p.rule ? `<button id="f-allrules">${t('All rules')}</button>` : ''}</div>
        <div style="overflow-x:auto" id="violations-scroll"><table id="violations-table"><thead><tr><th>${t('First')}</th><th>${t('Severity')}</th><th>${t('Rule')}</th><th>${t('Source')}</th><th>${t('Destination')}</th><th>${t('Line')}</th><th class="num">${t('Flows')}</th><th class="num">${t('Bytes')}</th></tr></thead><tbody></tbody></table></div>
        <div class="pager" id="pager"></div>
      </div>
    </div>`;
  chips(ctx.el.querySelector('#f-severity'), 'severity', ctx.meta.violation_severities, p.severity, sevLabel);
  ctx.el.querySelector('#f-apply').addEventListener('click', () => update({ ip: ctx.el.querySelector('#f-ip').value.trim(), offset: null }));
  ctx.el.querySelector('#f-allrules')?.addEventListener('click', () => update({ rule: null, offset: null }));
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: p.line, severity: p.severity, ip: p.ip };
    const offset = Number(p.offset) || 0;
    const [rules, list] = await Promise.all([get('violations/rules', q), get('violations', { ...q, rule: p.rule, limit: LIMIT, offset })]);
    if (!c.isCurrent()) return;
    draw(c, rules, list, offset);
    exportLinks(c.el.querySelector('#pv-export'), 'violations', { ...q, rule: p.rule });
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, rules, list, offset) {
  const el = ctx.el;
  const gp = globalParams(ctx.params);
  const total = el.querySelector('#pv-total');
  total.innerHTML = ctx.params.rule
    ? t('{n} matching rule {rule}', { n: int(list.total), rule: `<span translate="no">${esc(ctx.params.rule)}</span>` })
    : esc(t('{n} matching', { n: int(list.total) }));
  total.dataset.value = list.total;
  el.querySelector('#rules').innerHTML = rules.rules.length
    ? rules.rules
        .map(
          (r) => `<div class="rule${r.rule_id === ctx.params.rule ? ' on' : ''}" data-rule="${esc(r.rule_id)}">
      <div class="head">${sev(r.max_severity)} <b translate="no">${esc(r.rule_name || r.rule_id)}</b><span class="spacer"></span>
        <span class="mono" data-testid="rule-count" data-value="${r.violations}">${t('{n} violations', { n: int(r.violations) })}</span></div>
      <div class="muted mono"><span translate="no">${esc(r.rule_id)} · ${esc(r.rule_location)}</span> · ${t('{n} flows', { n: int(r.flows) })} · ${bytes(r.bytes)} · ${t('last {time}', { time: esc(time(r.last_seen)) })}</div>
      <pre class="rule" data-testid="rule-text" translate="no">${esc(r.rule_text)}</pre></div>`,
        )
        .join('')
    : `<div class="empty">${t('No violations in this time range.')}</div>`;
  el.querySelector('#rules').onclick = (e) => {
    const r = e.target.closest('[data-rule]');
    if (r) update({ rule: r.dataset.rule === ctx.params.rule ? null : r.dataset.rule, offset: null });
  };
  el.querySelector('#violations-table tbody').innerHTML = list.items.length
    ? list.items
        .map(
          (v) => `<tr class="click" data-id="${esc(v.id)}"><td>${esc(time(v.first))}</td><td>${sev(v.severity)}</td>
        <td class="ellipsis" translate="no"><a href="${link('violation', gp, v.id)}" title="${esc(v.rule_name)}">${esc(v.rule_id)}</a></td>
        <td class="mono">${ipLink(v.src, gp)} <span class="muted" translate="no">${esc(v.src_zone || v.src_country)}</span></td>
        <td class="mono">${ipLink(v.dst, gp)} <span class="muted" translate="no">${esc(v.dst_zone || v.dst_country)}</span></td>
        <td translate="no">${esc(v.line)}</td><td class="num">${int(v.flows)}</td><td class="num">${bytes(v.bytes)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="8" class="empty">${t('No violations match.')}</td></tr>`;
  el.querySelector('#violations-table tbody').onclick = (e) => {
    const tr = e.target.closest('tr[data-id]');
    if (tr && e.target.tagName !== 'A') location.hash = link('violation', gp, tr.dataset.id);
  };
  pager(el.querySelector('#pager'), list.total, LIMIT, offset);
}
