// Alerts: timeline by severity, filters (kind, severity, line, IP, country), paginated list.
import { get } from '../api.js';
import { axisStyle, base, chart, SEVERITY_COLORS, timeX, timeTooltip } from '../charts.js';
import { esc, int, sev, sevLabel, si, time } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { chips, exportLinks, ipLink, pager } from './common.js';
import { alertSummary, kindLabel, STATES, stateBadge, stateLabel, unitHtml } from './alert.js';
import { t } from '../i18n.js';

const LIMIT = 50;

export async function render(ctx) {
  const p = ctx.params;
  ctx.el.innerHTML = `
    <h1>${t('Alerts')} <span class="sub" id="al-total"></span> <span class="export" id="al-export"></span></h1>
    <div class="panel" style="margin-bottom:12px">
      <div class="toolbar"><label>${t('Kind')}</label><div class="chips" id="f-kind"></div></div>
      <div class="toolbar"><label>${t('Triage')}</label><div class="chips" id="f-state"></div></div>
      <div class="toolbar"><label>${t('Severity')}</label><div class="chips" id="f-severity"></div>
        <label style="margin-left:12px">IP <input id="f-ip" size="18" placeholder="${esc(t('address'))}" value="${esc(p.ip ?? '')}"></label>
        <label>${t('Country')} <input id="f-country" size="3" maxlength="2" placeholder="CC" value="${esc(p.country ?? '')}"></label>
        <button id="f-apply">${t('Apply')}</button> <button id="f-clear">${t('Clear filters')}</button></div>
      <div class="chart" id="ch-timeline" style="height:160px"></div>
    </div>
    <div class="panel"><table id="alerts-table"><thead><tr>
      <th>${t('First')}</th><th>${t('Last')}</th><th>${t('Severity')}</th><th>${t('Triage')}</th><th>${t('Kind')}</th><th>${t('Source')}</th><th>${t('Destination')}</th><th>${t('Line')}</th><th class="num">${t('Measured')}</th><th class="num">${t('Threshold')}</th><th>${t('Description')}</th>
    </tr></thead><tbody></tbody></table><div class="pager" id="pager"></div></div>`;
  chips(ctx.el.querySelector('#f-kind'), 'kind', ctx.meta.alert_kinds, p.kind, kindLabel);
  chips(ctx.el.querySelector('#f-severity'), 'severity', ctx.meta.alert_severities, p.severity, sevLabel);
  chips(ctx.el.querySelector('#f-state'), 'state', STATES, p.state, stateLabel);
  const apply = () => update({ ip: ctx.el.querySelector('#f-ip').value.trim(), country: ctx.el.querySelector('#f-country').value.trim().toUpperCase(), offset: null });
  ctx.el.querySelector('#f-apply').addEventListener('click', apply);
  for (const id of ['#f-ip', '#f-country']) ctx.el.querySelector(id).addEventListener('keydown', (e) => e.key === 'Enter' && apply());
  ctx.el.querySelector('#f-clear').addEventListener('click', () => update({ kind: null, severity: null, state: null, ip: null, country: null, offset: null }));
  const tl = chart(ctx.el.querySelector('#ch-timeline'));
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: p.line, kind: p.kind, severity: p.severity, state: p.state, ip: p.ip, country: p.country };
    const offset = Number(p.offset) || 0;
    const [list, timeline] = await Promise.all([get('alerts', { ...q, limit: LIMIT, offset }), get('alerts/timeline', q)]);
    if (!c.isCurrent()) return;
    draw(c, list, timeline, tl, offset);
    exportLinks(c.el.querySelector('#al-export'), 'alerts', q);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, list, timeline, tl, offset) {
  const el = ctx.el;
  const total = el.querySelector('#al-total');
  total.textContent = t('{n} matching', { n: int(list.total) });
  total.dataset.value = list.total;
  const ts = [...new Set(timeline.buckets.map((b) => b.t))].sort((a, b) => a - b);
  const sevs = ctx.meta.alert_severities;
  tl.setOption(
    {
      ...base,
      grid: { ...base.grid, top: 24, bottom: 22 },
      tooltip: timeTooltip(int),
      xAxis: timeX(ctx.range.from, ctx.range.to),
      yAxis: { type: 'value', ...axisStyle, minInterval: 1 },
      series: sevs.map((s) => ({
        name: sevLabel(s), type: 'bar', stack: 'a', color: SEVERITY_COLORS[s], barMinWidth: 4, barMaxWidth: 24,
        data: ts.map((t) => [t * 1000, timeline.buckets.filter((b) => b.t === t && b.severity === s).reduce((a, b) => a + b.n, 0)]),
      })),
    },
    true,
  );
  const gp = globalParams(ctx.params);
  el.querySelector('#alerts-table tbody').innerHTML = list.items.length
    ? list.items
        .map(
          (a) => `<tr class="click" data-id="${esc(a.id)}" data-kind="${esc(a.kind)}" data-line="${esc(a.line)}" data-severity="${esc(a.severity)}">
        <td>${esc(time(a.first))}</td><td>${esc(time(a.last))}</td><td>${sev(a.severity)}</td><td>${stateBadge(a.triage_state ?? 'new')}${a.assignee ? ` <span class="muted" translate="no">${esc(a.assignee)}</span>` : ''}</td>
        <td><a href="${link('alert', gp, a.id)}">${esc(kindLabel(a.kind))}</a></td>
        <td class="mono" translate="no">${ipLink(a.src, gp)}${a.src_country ? ` <span class="muted">${esc(a.src_country)}</span>` : ''}</td>
        <td class="mono" translate="no">${ipLink(a.dst, gp, a.port)}${a.dst_country ? ` <span class="muted">${esc(a.dst_country)}</span>` : ''}</td>
        <td translate="no">${esc(a.line)}</td><td class="num">${si(a.measured)} ${unitHtml(a.unit)}</td><td class="num">${si(a.threshold)}</td>
        <td class="wrap">${alertSummary(a)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="11" class="empty">${t('No alerts match.')}</td></tr>`;
  el.querySelector('#alerts-table tbody').onclick = (e) => {
    const tr = e.target.closest('tr[data-id]');
    if (tr && e.target.tagName !== 'A') location.hash = link('alert', gp, tr.dataset.id);
  };
  pager(el.querySelector('#pager'), list.total, LIMIT, offset);
}
