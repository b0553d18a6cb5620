// Probe health: who reported recently, capture and export rates, drops, spool.
import { get } from '../api.js';
import { axisStyle, base, chart, PALETTE, timeX, timeTooltip } from '../charts.js';
import { age, bytes, esc, int, si, time } from '../fmt.js';
import { t } from '../i18n.js';

const DROPS = ['capture_dropped', 'fallback_dropped', 'map_full'];

export async function render(ctx) {
  ctx.el.innerHTML = `<h1>${t('Probe health')} <span class="sub">${t('rates over the last 5 minutes of reports')}</span></h1>
    <div class="probe-cards" id="probes" style="margin-bottom:12px"></div>
    <div class="grid cols-2">
      <div class="panel"><h2>${t('Probe spool (not yet acknowledged)')}</h2><div class="chart" id="ch-spool"></div></div>
      <div class="panel"><h2>${t('Records exported per second')}</h2><div class="chart" id="ch-records"></div></div>
    </div>`;
  const charts = { spool: chart(ctx.el.querySelector('#ch-spool')), records: chart(ctx.el.querySelector('#ch-records')) };
  const refresh = async (c) => {
    const [r, h] = await Promise.all([get('probes', { window: 300 }), get('probes/history', { from: c.range.from, to: c.range.to })]);
    if (!c.isCurrent()) return;
    draw(c, r);
    drawHistory(c, h, charts);
  };
  await refresh(ctx);
  return refresh;
}

function status(p) {
  if (p.age_seconds < 60) return ['ok', 'reporting'];
  if (p.age_seconds < 300) return ['warn', 'late'];
  return ['bad', 'silent'];
}

/** A probe state's label. */
const statusLabel = (s) => ({ reporting: t('reporting'), late: t('late'), silent: t('silent') })[s] ?? s;

function draw(ctx, r) {
  const el = ctx.el.querySelector('#probes');
  if (!r.probes.length) {
    el.innerHTML = `<div class="panel empty">${t('No probe has reported yet.')}</div>`;
    return;
  }
  el.innerHTML = r.probes
    .map((p) => {
      const [cls, word] = status(p);
      const rate = (k) => p.rates[k];
      const drops = DROPS.reduce((a, k) => a + (p.counters[k] || 0), 0);
      const counters = Object.entries(p.counters).sort(([a], [b]) => a.localeCompare(b));
      return `<div class="panel probe" data-probe="${esc(p.probe_id)}">
        <div class="toolbar" style="margin-bottom:8px"><span class="dot ${cls}"></span><b style="font-size:14px" translate="no">${esc(p.probe_id)}</b>
          <span class="muted">${t('{status} · last report {age} ago ({time})', { status: statusLabel(word), age: age(p.age_seconds), time: esc(time(p.last_report)) })}</span></div>
        <div class="kpis" style="grid-template-columns:repeat(4,1fr);margin-bottom:8px">
          <div class="kpi"><div class="label">${t('Packets/s')}</div><div class="value" style="font-size:16px">${rate('packets') !== undefined ? si(rate('packets')) : '–'}</div></div>
          <div class="kpi"><div class="label">${t('Records/s')}</div><div class="value" style="font-size:16px">${rate('export_records') !== undefined ? si(rate('export_records')) : '–'}</div></div>
          <div class="kpi"><div class="label">${t('Drops')}</div><div class="value" style="font-size:16px;color:${drops ? 'var(--bad)' : 'inherit'}" data-testid="drops" data-value="${drops}">${int(drops)}</div></div>
          <div class="kpi"><div class="label">${t('Spool')}</div><div class="value" style="font-size:16px" data-testid="spool-bytes" data-value="${p.spool_bytes}">${bytes(p.spool_bytes)}</div><div class="hint">${t('{n} batches', { n: int(p.spool_batches) })}</div></div>
        </div>
        <div class="muted" style="margin-bottom:6px">${t('Lines: {lines} · {n} reports in window', { lines: p.lines.map((l) => `<b class="mono" translate="no">${esc(l)}</b>`).join(', ') || '–', n: int(p.reports_in_window) })}</div>
        <details><summary class="muted">${t('Counters ({n})', { n: counters.length })}</summary><table><thead><tr><th>${t('Counter')}</th><th class="num">${t('Total')}</th><th class="num">${t('Per second')}</th></tr></thead><tbody>
          ${counters.map(([k, v]) => `<tr><td class="mono" translate="no">${esc(k)}</td><td class="num" data-counter="${esc(k)}" data-value="${v}">${int(v)}</td><td class="num">${rate(k) !== undefined ? si(rate(k)) : ''}</td></tr>`).join('')}
        </tbody></table></details></div>`;
    })
    .join('');
}

function drawHistory(ctx, h, charts) {
  const probes = [...new Set(h.buckets.map((b) => b.probe_id))].sort();
  const series = (f) =>
    probes.map((p, i) => ({
      name: p, type: 'line', symbol: 'circle', symbolSize: 4, color: PALETTE[i % PALETTE.length], areaStyle: { opacity: 0.15 },
      data: h.buckets.filter((b) => b.probe_id === p).map((b) => [b.t * 1000, f(b)]),
    }));
  const opt = (fmt, s, minInterval) => ({
    ...base,
    tooltip: timeTooltip(fmt),
    xAxis: timeX(ctx.range.from, ctx.range.to),
    yAxis: { type: 'value', minInterval, ...axisStyle, axisLabel: { color: '#7d8aa5', formatter: (v) => fmt(v) } },
    series: s,
  });
  // Bytes are whole: no 0.2 B ticks when the spool is (nearly) empty.
  charts.spool.setOption(opt(bytes, series((b) => b.spool_bytes), 1), true);
  charts.records.setOption(opt((v) => si(v), series((b) => b.records / h.step)), true);
}
