// Incidents: related findings as one — alerts on one target, violations of one rule,
// each group extended while the next starts within the gap — most severe first.
import { get } from '../api.js';
import { epochMs, esc, int, sev, time } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { ipLink, isAddr, pager } from './common.js';

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
    <h1>Incidents <span class="sub" id="in-total"></span></h1>
    <div class="panel">
      <div class="toolbar"><label>Findings belong together within</label>
        <div class="seg" id="f-gap">${GAPS.map(([v, l]) => `<button data-gap="${v}" class="${v === gap ? 'on' : ''}">${l}</button>`).join('')}</div></div>
      <div style="overflow-x:auto"><table id="incidents-table"><thead><tr><th>First</th><th>Last</th><th>Severity</th><th>Subject</th><th>Line</th><th>Kinds / rules</th><th class="num">Alerts</th><th class="num">Violations</th><th></th></tr></thead><tbody></tbody></table></div>
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
  const t = ctx.el.querySelector('#in-total');
  t.textContent = `${int(list.total)} incidents`;
  t.dataset.value = list.total;
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
            <td>${rule ? `rule <b>${esc(rule)}</b>` : `${ipLink(i.subject, gp)}${isAddr(i.subject) ? ` <a class="muted" href="${link('host', gp, i.subject)}" title="host page">⌂</a>` : ''}`}</td>
            <td>${esc(i.line)}</td><td>${i.kinds.map((k) => `<span class="chip static">${esc(k.replace(/_/g, ' '))}</span>`).join(' ')}</td>
            <td class="num">${int(i.alerts)}</td><td class="num">${int(i.violations)}</td><td><a href="${open}" data-testid="incident-open">findings →</a></td></tr>`;
        })
        .join('')
    : '<tr><td colspan="9" class="empty">No incident in this time range.</td></tr>';
  pager(ctx.el.querySelector('#pager'), list.total, LIMIT, offset);
}
