// Cross-border map: traffic by country pair as arcs, countries shaded by volume, alerts
// overlaid as pulsing markers coloured by their highest severity.
import { get } from '../api.js';
import { base, chart, echarts, SEVERITY_COLORS } from '../charts.js';
import { bytes, esc, int, sev, sevLabel } from '../fmt.js';
import { globalParams, link } from '../state.js';
import { world } from '../world.js';
import { lang, t } from '../i18n.js';
import { kindText } from './alert.js';

let registered = false;

export async function render(ctx) {
  const w = world();
  if (!registered) {
    echarts.registerMap('world', w.geojson);
    registered = true;
  }
  ctx.el.innerHTML = `
    <h1>${t('Cross-border map')} <span class="sub" id="map-sub">${t('traffic by country pair; markers: countries with alerts')}</span></h1>
    <div class="grid cols-3">
      <div class="panel"><div class="chart tall" id="ch-map"></div></div>
      <div class="grid" style="align-content:start">
        <div class="panel"><h2>${t('Country pairs')}</h2><div class="scroll"><table id="pairs" class="fixed"><thead><tr><th style="width:33%">${t('From')}</th><th style="width:33%">${t('To')}</th><th class="num" style="width:18%">${t('Bytes')}</th><th class="num" style="width:16%">${t('Flows')}</th></tr></thead><tbody></tbody></table></div></div>
        <div class="panel"><h2>${t('Alerts by country')}</h2><div class="scroll"><table id="alert-countries"><thead><tr><th>${t('Country')}</th><th class="num">${t('Alerts')}</th><th>${t('Highest')}</th></tr></thead><tbody></tbody></table></div></div>
      </div>
    </div>`;
  const c = chart(ctx.el.querySelector('#ch-map'));
  const refresh = async (x) => {
    const g = await get('geo', { from: x.range.from, to: x.range.to, line: x.params.line });
    if (x.isCurrent()) draw(x, g, c, w);
  };
  await refresh(ctx);
  return refresh;
}

/** A country's name in the console's language (the map's English name as a fallback). */
function countryName(w, cc) {
  try {
    return new Intl.DisplayNames([lang() === 'zh' ? 'zh-CN' : 'en'], { type: 'region', fallback: 'none' }).of(cc) ?? w.names.get(cc) ?? '';
  } catch {
    return w.names.get(cc) ?? '';
  }
}
const label = (w, cc) => (cc ? `${cc} ${countryName(w, cc)}`.trim() : t('local / unknown'));

function draw(ctx, g, c, w) {
  // Endpoints without a country (our own, private, unknown addresses) sit at the hub's
  // country when [api] home_country is configured.
  const home = ctx.meta.home_country;
  const at = (cc) => cc || home || '';
  const perCountry = new Map();
  for (const p of g.pairs) {
    for (const cc of new Set([at(p.src_country), at(p.dst_country)])) if (cc) perCountry.set(cc, (perCountry.get(cc) ?? 0) + p.bytes);
  }
  const arcs = g.pairs
    .map((p) => ({ ...p, a: at(p.src_country), b: at(p.dst_country) }))
    .filter((p) => p.a && p.b && p.a !== p.b && w.centers.has(p.a) && w.centers.has(p.b))
    .slice(0, 200);
  const maxArc = Math.max(1, ...arcs.map((p) => p.bytes));
  const alertPoints = g.alerts
    .filter((a) => w.centers.has(a.country))
    .map((a) => ({ name: a.country, value: [...w.centers.get(a.country), a.alerts], severity: a.max_severity, kinds: a.kinds }));
  const maxCountry = Math.max(1, ...perCountry.values());
  c.setOption(
    {
      ...base,
      legend: { show: false },
      tooltip: { ...base.tooltip, trigger: 'item' },
      visualMap: {
        min: 0, max: maxCountry, show: true, left: 10, bottom: 10, calculable: false, seriesIndex: 0,
        text: [t('more bytes'), ''], textStyle: { color: '#7d8aa5' }, inRange: { color: ['#13213d', '#0e7490', '#38bdf8'] },
        formatter: (v) => bytes(v),
      },
      geo: {
        map: 'world', roam: true, zoom: 1.15, center: [20, 25],
        itemStyle: { areaColor: '#111a2e', borderColor: '#26345a', borderWidth: 0.5 },
        emphasis: { itemStyle: { areaColor: '#1e3a5f' }, label: { show: false } },
        tooltip: { show: false },
      },
      series: [
        {
          type: 'map', geoIndex: 0, name: 'bytes',
          data: [...perCountry].map(([name, value]) => ({ name, value })),
          tooltip: { formatter: (p) => `<span translate="no">${esc(label(w, p.name))}</span><br>${bytes(p.value || 0)}` },
        },
        {
          type: 'lines', coordinateSystem: 'geo', name: 'pairs', zlevel: 1,
          effect: { show: true, period: 5, trailLength: 0.3, symbolSize: 3, color: '#fde68a' },
          lineStyle: { curveness: 0.25, opacity: 0.6 },
          data: arcs.map((p) => ({
            coords: [w.centers.get(p.a), w.centers.get(p.b)],
            lineStyle: { width: 0.6 + 3.4 * (p.bytes / maxArc), color: '#f59e0b' },
            value: p.bytes, src: label(w, p.src_country), dst: label(w, p.dst_country),
          })),
          tooltip: { formatter: (p) => `<span translate="no">${esc(p.data.src)}</span> → <span translate="no">${esc(p.data.dst)}</span><br>${bytes(p.data.value)}` },
        },
        {
          type: 'effectScatter', coordinateSystem: 'geo', name: 'alerts', zlevel: 2,
          rippleEffect: { scale: 3.5, brushType: 'stroke' },
          symbolSize: (v) => 8 + Math.min(14, Math.sqrt(v[2]) * 3),
          itemStyle: { color: (p) => SEVERITY_COLORS[p.data.severity] ?? '#ef4444' },
          data: alertPoints,
          tooltip: { formatter: (p) => `<span translate="no">${esc(label(w, p.name))}</span><br>${t('{n} alerts, highest {severity}', { n: p.value[2], severity: esc(sevLabel(p.data.severity)) })}<br>${esc(p.data.kinds.map(kindText).join(', '))}` },
        },
      ],
    },
    true,
  );
  c.off('click');
  c.on('click', (p) => {
    if (p.seriesName === 'alerts') location.hash = link('alerts', { ...globalParams(ctx.params), country: p.name });
  });
  if (home) ctx.el.querySelector('#map-sub').innerHTML = t('traffic by country pair (local and unknown addresses drawn at {home}); markers: countries with alerts', { home: `<span translate="no">${esc(label(w, home))}</span>` });
  const gp = globalParams(ctx.params);
  ctx.el.querySelector('#pairs tbody').innerHTML = g.pairs.length
    ? g.pairs
        .slice(0, 100)
        .map((p) => `<tr><td translate="no">${esc(label(w, p.src_country))}</td><td translate="no">${esc(label(w, p.dst_country))}</td><td class="num" data-value="${p.bytes}">${bytes(p.bytes)}</td><td class="num">${int(p.flows)}</td></tr>`)
        .join('')
    : `<tr><td colspan="4" class="empty">${t('No traffic in this time range.')}</td></tr>`;
  ctx.el.querySelector('#alert-countries tbody').innerHTML = g.alerts.length
    ? g.alerts
        .map((a) => `<tr class="click" data-country="${esc(a.country)}"><td translate="no"><a href="${link('alerts', { ...gp, country: a.country })}">${esc(label(w, a.country))}</a></td><td class="num" data-value="${a.alerts}">${int(a.alerts)}</td><td>${sev(a.max_severity)}</td></tr>`)
        .join('')
    : `<tr><td colspan="3" class="empty">${t('No alerts with a known country.')}</td></tr>`;
}
