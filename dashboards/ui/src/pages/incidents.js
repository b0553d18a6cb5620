// Incidents: related findings as one — alerts on one target, violations of one rule,
// each group extended while the next starts within the gap — most severe first.
import { get } from '../api.js';
import { epochMs, esc, int, sev, time } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { ipLink, isAddr, pager } from './common.js';
import { kindLabel } from './alert.js';
import { t } from '../i18n.js';

const LIMIT = 50;
const GAPS = [
  ['60', '1 min'],
  ['300', '5 min'],
  ['900', '15 min'],
  ['3600', '1 h'],
  ['86400', '1 d'],
];

export async function render(ctx) {
  const p = ctx.params;
  const gap = p.gap || '900';
  ctx.el.innerHTML = `
    <h1>${t('Incidents')} <span class="sub" id="in-total"></span></h1>
    <div class="panel">
      <div class="toolbar"><label>${t('Findings belong together within')}</label>
        <div class="seg" id="f-gap">${GAPS.map(([v, l]) => `<button data-gap="${v}" class="${v === gap ? 'on' : ''}">${l}</button>`).join('')}</div></div>
      <div style="overflow-x:auto"><table id="incidents-table"><thead><tr><th>${t('First')}</th><th>${t('Last')}</th><th>${t('Severity')}</th><th>${t('Subject')}</th><th>${t('Line')}</th><th>${t('Kinds / rules')}</th><th class="num">${t('Alerts')}</th><th class="num">${t('Violations')}</th><th></th></tr></thead><tbody></tbody></table></div>
      <div class="pager" id="pager"></div>
    </div>`;
  ctx.el.querySelector('#f-gap').addEventListener('click', (e) => e.target.dataset.gap && update({ gap: e.target.dataset.gap, offset: null }));
  const refresh = async (c) => {
    const offset = Number(p.offset) || 0;
    const list = await get('incidents', { from: c.range.from, to: c.range.to, line: p.line, gap, limit: LIMIT, offset });
    if (!c.isCurrent()) return;
    draw(c, list, offset);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, list, offset) {
  const gp = globalParams(ctx.params);
  const tot = ctx.el.querySelector('#in-total');
  tot.textContent = t('{n} incidents', { n: int(list.total) });
  tot.dataset.value = list.total;
  ctx.el.querySelector('#incidents-table tbody').innerHTML = list.items.length
    ? list.items
        .map((i) => {
          const from = epochMs(i.first);
          const to = epochMs(i.last, true);
          const rule = i.subject.startsWith('rule ') ? i.subject.slice(5) : null;
          // Its findings: the alerts on the target or the rule's violations, in its span.
          const open = rule
            ? link('violations', { ...gp, from, to: to + 1, line: i.line, rule })
            : link('alerts', { ...gp, from, to: to + 1, line: i.line, ...(isAddr(i.subject) ? { ip: i.subject } : {}) });
          return `<tr data-subject="${esc(i.subject)}" data-alerts="${i.alerts}" data-violations="${i.violations}">
            <td>${esc(time(i.first))}</td><td>${esc(time(i.last))}</td><td>${sev(i.severity)}</td>
            <td>${rule ? t('rule {rule}', { rule: `<b translate="no">${esc(rule)}</b>` }) : `<span translate="no">${ipLink(i.subject, gp)}</span>${isAddr(i.subject) ? ` <a class="muted" href="${link('host', gp, i.subject)}" title="${esc(t('host page'))}">⌂</a>` : ''}`}</td>
            <td translate="no">${esc(i.line)}</td><td>${i.kinds.map((k) => (rule ? `<span class="chip static" translate="no">${esc(k.replace(/_/g, ' '))}</span>` : `<span class="chip static">${esc(kindLabel(k))}</span>`)).join(' ')}</td>
            <td class="num">${int(i.alerts)}</td><td class="num">${int(i.violations)}</td><td><a href="${open}" data-testid="incident-open">${t('findings →')}</a></td></tr>`;
        })
        .join('')
    : `<tr><td colspan="9" class="empty">${t('No incident in this time range.')}</td></tr>`;
  pager(ctx.el.querySelector('#pager'), list.total, LIMIT, offset);
}
