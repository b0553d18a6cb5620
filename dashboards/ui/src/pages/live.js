// Live traffic from the collector's memory (GET /api/v1/live, no ClickHouse query): per
// line, throughput by direction per second over the aggregation window, records since
// the collector started, merged flows held, flow size / duration / packet size
// percentiles, and the top talkers of one line. Event time: a replayed capture shows its
// own time. Refreshed with every poll, whatever range is selected.
import { get } from '../api.js';
import { axisStyle, base, chart, timeX, timeTooltip } from '../charts.js';
import { age, bps, bytes, esc, int, time, tz } from '../fmt.js';
import { globalParams, update } from '../state.js';
import { ipLink, setNum } from './common.js';
import { t } from '../i18n.js';

export async function render(ctx) {
  ctx.el.innerHTML = `
    <h1>${t('Live traffic')} <span class="sub" id="lv-time"></span></h1>
    <div class="kpis">
      <div class="kpi"><div class="label">${t('Records since start')}</div><div class="value" data-testid="lv-records">–</div></div>
      <div class="kpi"><div class="label">${t('Flows held')}</div><div class="value" data-testid="lv-flows">–</div></div>
      <div class="kpi"><div class="label">${t('Lines')}</div><div class="value" data-testid="lv-lines">–</div></div>
      <div class="kpi"><div class="label">${t('Throughput in the window')}</div><div class="value" data-testid="lv-rate">–</div><div class="hint" id="lv-window"></div></div>
    </div>
    <div class="grid">
      <div class="panel"><h2>${t('Throughput per second (in ▲ / out ▼)')}</h2><div class="chart" id="ch-live"></div></div>
      <div class="panel"><h2>${t('Lines')}</h2><div class="scroll" style="max-height:none"><table id="lv-table"><thead><tr>
        <th>${t('Line')}</th><th class="num">${t('In')}</th><th class="num">${t('Out')}</th><th class="num">${t('Records')}</th><th class="num">${t('Flows held')}</th>
        <th class="num">${t('Flow size p50 / p99')}</th><th class="num">${t('Duration p50 / p99')}</th><th class="num">${t('Packet size p50')}</th>
      </tr></thead><tbody></tbody></table></div></div>
      <div class="panel"><h2 id="lv-top-title">${t('Top sources')}</h2><table id="lv-top"><thead><tr><th>${t('Source')}</th><th class="num">${t('Bytes')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Flows')}</th></tr></thead><tbody></tbody></table></div>
    </div>`;
  const ch = chart(ctx.el.querySelector('#ch-live'));
  const refresh = async (c) => {
    const v = await get('live', { line: c.params.line });
    if (!c.isCurrent()) return;
    draw(c, v, ch);
  };
  await refresh(ctx);
  // The live view is about now, whatever range is selected: always refreshed.
  return refresh;
}

/** Sum of a direction's per-second cells over every shown line. */
function perSecond(lines, dir, n) {
  const out = new Array(n).fill(0);
  for (const l of lines) (l[dir].per_second || []).forEach((c, i) => { if (i < n) out[i] += c.bytes; });
  return out;
}

/** A line's records, both directions. */
const recordsOf = (l) => l.ingress.totals.records + l.egress.totals.records;

const twoPct = (d, f) => (d.count ? `${f(d.p50)} / ${f(d.p99)}` : '–');

/** A duration in ns: µs or ms below a second. */
const dur = (ns) => (ns < 1e6 ? `${Math.round(ns / 1e3)} µs` : ns < 1e9 ? `${Math.round(ns / 1e6)} ms` : age(ns / 1e9));

function draw(ctx, v, ch) {
  const $ = (s) => ctx.el.querySelector(s);
  const gp = globalParams(ctx.params);
  const lines = v.lines;
  const records = lines.reduce((s, l) => s + recordsOf(l), 0);
  setNum($('[data-testid=lv-records]'), records, int);
  setNum($('[data-testid=lv-flows]'), v.active_flows, int);
  setNum($('[data-testid=lv-lines]'), lines.length, int);
  const n = v.window_secs;
  const inSec = perSecond(lines, 'ingress', n);
  const outSec = perSecond(lines, 'egress', n);
  const total = inSec.reduce((a, b) => a + b, 0) + outSec.reduce((a, b) => a + b, 0);
  setNum($('[data-testid=lv-rate]'), total, (b) => bps(b / Math.max(1, n)));
  $('#lv-window').textContent = t('mean over {n} s', { n });
  $('#lv-time').textContent = v.watermark_ns
    ? t('event time {time} {zone}', { time: time(Math.floor(v.watermark_ns / 1e6)), zone: tz() })
    : t('no records yet');
  const from = v.window_start_s * 1000;
  const to = from + n * 1000;
  ch.setOption(
    {
      ...base,
      tooltip: timeTooltip((x) => bps(Math.abs(x))),
      xAxis: timeX(from, to),
      yAxis: { type: 'value', ...axisStyle, axisLabel: { color: '#7d8aa5', formatter: (x) => bps(Math.abs(x)) } },
      series: [
        { name: t('In'), type: 'line', showSymbol: false, areaStyle: { opacity: 0.15 }, data: inSec.map((b, i) => [from + i * 1000, b]) },
        { name: t('Out'), type: 'line', showSymbol: false, areaStyle: { opacity: 0.15 }, data: outSec.map((b, i) => [from + i * 1000, -b]) },
      ],
    },
    true,
  );
  const rate = (l, dir) => bps((l[dir].per_second || []).reduce((s, c) => s + c.bytes, 0) / Math.max(1, n));
  $('#lv-table tbody').innerHTML = lines
    .map(
      (l) => `<tr data-line="${esc(l.line)}" data-records="${recordsOf(l)}">
        <td><a href="#" data-pick="${esc(l.line)}" translate="no">${esc(l.line)}</a></td>
        <td class="num">${esc(rate(l, 'ingress'))}</td><td class="num">${esc(rate(l, 'egress'))}</td>
        <td class="num">${int(recordsOf(l))}</td><td class="num">${int(l.active_flows)}</td>
        <td class="num">${esc(twoPct(l.flow_bytes, bytes))}</td><td class="num">${esc(twoPct(l.flow_duration_ns, dur))}</td>
        <td class="num">${l.packet_size.count ? esc(bytes(l.packet_size.p50)) : '–'}</td></tr>`,
    )
    .join('');
  for (const a of ctx.el.querySelectorAll('#lv-table [data-pick]')) {
    a.addEventListener('click', (e) => {
      e.preventDefault();
      update({ line: a.dataset.pick });
    });
  }
  // Top sources (over the flows held): of the selected line, else of the line holding
  // the most flows.
  const busiest = [...lines].sort((a, b) => b.active_flows - a.active_flows)[0];
  const top = busiest ? busiest.top.sources : [];
  $('#lv-top-title').innerHTML = busiest ? t('Top sources of {line} (flows held)', { line: `<span translate="no">${esc(busiest.line)}</span>` }) : t('Top sources');
  $('#lv-top tbody').innerHTML = top
    .slice(0, 20)
    .map((s) => `<tr><td class="mono">${ipLink(s.addr, gp)}</td><td class="num">${esc(bytes(s.bytes))}</td><td class="num">${int(s.packets)}</td><td class="num">${int(s.flows)}</td></tr>`)
    .join('');
}
