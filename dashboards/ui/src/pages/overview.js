// Overview: traffic per line in and out over time, totals, alerts in range; live.
import { get } from '../api.js';
import { axisStyle, base, chart, PALETTE, zoomable, timeX, timeTooltip } from '../charts.js';
import { bps, bytes, esc, int, si, step, time, tz } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { setNum } from './common.js';
import { t } from '../i18n.js';

export async function render(ctx) {
  ctx.el.innerHTML = `
    <h1>${t('Overview')} <span class="sub" id="ov-range"></span> <button class="small" id="zoom-out" title="${esc(t('Four times the span around the same middle'))}">${t('Zoom out')}</button></h1>
    <p class="muted hint-line">${t('Drag across a chart to zoom in: short ranges are drawn in buckets down to one second, read from the flows themselves.')}</p>
    <div class="kpis">
      <div class="kpi"><div class="label">${t('Bytes')}</div><div class="value" data-testid="total-bytes">–</div><div class="hint" id="k-rate"></div></div>
      <div class="kpi"><div class="label">${t('Packets')}</div><div class="value" data-testid="total-packets">–</div></div>
      <div class="kpi"><div class="label">${t('Flow records')}</div><div class="value" data-testid="total-flows">–</div></div>
      <div class="kpi"><div class="label">${t('Lines')}</div><div class="value" data-testid="line-count">–</div></div>
      <div class="kpi"><div class="label">${t('Alerts')}</div><div class="value" data-testid="alert-count">–</div><div class="hint"><a id="k-alerts" href="#">${t('open the alert list')}</a></div></div>
    </div>
    <div class="grid">
      <div class="panel"><h2>${t('Throughput per line (in ▲ / out ▼)')}</h2><div class="chart" id="ch-bytes"></div></div>
      <div class="grid cols-2">
        <div class="panel"><h2>${t('Packets per second')}</h2><div class="chart" id="ch-packets"></div></div>
        <div class="panel"><h2>${t('Flow records per minute')} <span class="sub">${t('(rate in each bucket)')}</span></h2><div class="chart" id="ch-flows"></div></div>
      </div>
      <div class="panel"><h2>${t('Lines')}</h2><table id="lines-table"><thead><tr>
        <th>${t('Line')}</th><th class="num">${t('In bytes')}</th><th class="num">${t('Out bytes')}</th><th class="num">${t('In packets')}</th><th class="num">${t('Out packets')}</th><th class="num">${t('Flows')}</th><th>${t('Share')}</th>
      </tr></thead><tbody></tbody></table></div>
    </div>`;
  ctx.el.querySelector('#k-alerts').href = link('alerts', globalParams(ctx.params));
  const charts = {
    bytes: chart(ctx.el.querySelector('#ch-bytes')),
    packets: chart(ctx.el.querySelector('#ch-packets')),
    flows: chart(ctx.el.querySelector('#ch-flows')),
  };
  ctx.el.querySelector('#zoom-out').addEventListener('click', () => {
    const { from, to } = ctx.range;
    const f = Number(from), t = Number(to);
    if (!Number.isFinite(f) || !Number.isFinite(t)) return;
    const span = t - f;
    update({ from: Math.max(0, Math.round(f - 1.5 * span)), to: Math.round(t + 1.5 * span), range: null, offset: null });
  });
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: c.params.line };
    const [ov, al] = await Promise.all([get('overview', q), get('alerts', { ...q, limit: 1 })]);
    if (!c.isCurrent()) return;
    draw(c, ov, al, charts);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, ov, al, charts) {
  const $ = (s) => ctx.el.querySelector(s);
  const when = (ms) => time(ms).slice(0, ov.step < 60 ? 19 : 16);
  $('#ov-range').textContent = t('{from} → {to} {zone} · {step} buckets', { from: when(ov.from), to: when(ov.to), zone: tz(), step: step(ov.step) });
  $('#ov-range').dataset.step = String(ov.step);
  setNum($('[data-testid=total-bytes]'), ov.totals.bytes, bytes);
  setNum($('[data-testid=total-packets]'), ov.totals.packets, si);
  setNum($('[data-testid=total-flows]'), ov.totals.flows, si);
  const lines = [...new Set(ov.lines.map((l) => l.line))].sort();
  setNum($('[data-testid=line-count]'), lines.length, String);
  setNum($('[data-testid=alert-count]'), al.total, int);

  // Dense series: every bucket of every line, zero where a line was quiet.
  const times = [];
  for (let t = Math.floor(ov.from / 1000); t < ov.to / 1000; t += ov.step) times.push(t);
  const idx = new Map(times.map((t, i) => [t, i]));
  const series = (metric, dir, scale) => {
    const m = new Map(lines.map((l) => [l, new Array(times.length).fill(0)]));
    for (const r of ov.series) if (r.direction === dir && idx.has(r.t)) m.get(r.line)[idx.get(r.t)] += r[metric] * scale;
    return m;
  };
  const last = ov.series.length ? Math.max(...ov.series.map((r) => r.t)) : null;
  const lastBytes = ov.series.filter((r) => r.t === last).reduce((a, r) => a + r.bytes, 0);
  $('#k-rate').textContent = last ? t('{rate} in the last bucket', { rate: bps(lastBytes / ov.step) }) : t('no traffic in range');

  // The axis spans exactly the range asked for (not a rounded-out one): drag-to-zoom maps
  // pixels to that range, and a short range is not drawn on a wide empty axis.
  const x = timeX(ov.from, ov.to);
  const pts = (arr) => arr.map((v, i) => [times[i] * 1000, v]);
  const mirrored = (metric, scale, fmt) => {
    const inn = series(metric, 'ingress', scale);
    const out = series(metric, 'egress', -scale);
    const s = [];
    lines.forEach((l, i) => {
      const color = PALETTE[i % PALETTE.length];
      s.push({ name: t('{line} in', { line: l }), type: 'line', stack: 'in', areaStyle: { opacity: 0.25 }, symbol: 'none', lineStyle: { width: 1.2 }, color, data: pts(inn.get(l)) });
      s.push({ name: t('{line} out', { line: l }), type: 'line', stack: 'out', areaStyle: { opacity: 0.12 }, symbol: 'none', lineStyle: { width: 1, type: 'dashed' }, color, data: pts(out.get(l)) });
    });
    return {
      ...base,
      tooltip: timeTooltip((v) => fmt(Math.abs(v))),
      legend: { ...base.legend, type: 'scroll' },
      xAxis: x,
      yAxis: { type: 'value', ...axisStyle, axisLabel: { color: '#7d8aa5', formatter: (v) => fmt(Math.abs(v)) } },
      series: s,
    };
  };
  charts.bytes.setOption(mirrored('bytes', 8 / ov.step, (v) => si(v, 'bit/s')), true);
  charts.packets.setOption(mirrored('packets', 1 / ov.step, (v) => si(v, 'pps')), true);
  // The highest rate drawn (all lines of one direction in one bucket), for the reader
  // and the tests: a burst shows at its true rate once the buckets are short enough.
  const peak = (metric) => {
    let best = 0;
    for (const dir of ['ingress', 'egress']) {
      const sums = new Array(times.length).fill(0);
      for (const arr of series(metric, dir, 1).values()) arr.forEach((v, i) => (sums[i] += v));
      best = Math.max(best, ...sums);
    }
    return best / ov.step;
  };
  const pkPeak = peak('packets');
  const pk = ctx.el.querySelector('#ch-packets');
  pk.dataset.peak = String(pkPeak);
  pk.dataset.step = String(ov.step);
  pk.title = t('peak {rate} ({step} buckets)', { rate: si(pkPeak, 'pps'), step: step(ov.step) });
  const fl = series('flows', 'ingress', 1);
  const fe = series('flows', 'egress', 1);
  charts.flows.setOption(
    {
      ...base,
      legend: { ...base.legend, type: 'scroll' },
      tooltip: timeTooltip((v) => si(v, '/min')),
      xAxis: x,
      yAxis: { type: 'value', ...axisStyle },
      series: lines.map((l, i) => ({
        name: l,
        type: 'bar',
        stack: 'f',
        color: PALETTE[i % PALETTE.length],
        barMaxWidth: 12,
        data: pts(fl.get(l).map((v, j) => (v + fe.get(l)[j]) / (ov.step / 60))),
      })),
    },
    true,
  );
  for (const c of Object.values(charts)) zoomable(c, (from, to) => update({ from, to, range: null, offset: null }));

  const byLine = new Map(lines.map((l) => [l, { in: {}, out: {} }]));
  for (const r of ov.lines) byLine.get(r.line)[r.direction === 'ingress' ? 'in' : 'out'] = r;
  const total = ov.totals.bytes || 1;
  $('#lines-table tbody').innerHTML = lines.length
    ? lines
        .map((l) => {
          const v = byLine.get(l);
          const b = (v.in.bytes || 0) + (v.out.bytes || 0);
          return `<tr data-line="${esc(l)}"><td translate="no"><a href="${link('flows', { ...globalParams(ctx.params), line: l })}">${esc(l)}</a></td>
          <td class="num" data-value="${v.in.bytes || 0}">${bytes(v.in.bytes || 0)}</td><td class="num" data-value="${v.out.bytes || 0}">${bytes(v.out.bytes || 0)}</td>
          <td class="num">${int(v.in.packets)}</td><td class="num">${int(v.out.packets)}</td>
          <td class="num">${int((v.in.flows || 0) + (v.out.flows || 0))}</td>
          <td style="width:20%"><div class="bar"><i style="width:${((100 * b) / total).toFixed(1)}%"></i></div></td></tr>`;
        })
        .join('')
    : `<tr><td colspan="7" class="empty">${t('No traffic in this time range. Try “All data”.')}</td></tr>`;
}
