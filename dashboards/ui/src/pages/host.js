// One address from every side: traffic out (as source) and in (as destination) over
// time, where it is, its peers and ports, and the alerts and violations naming it.
import { get } from '../api.js';
import { axisStyle, base, chart, zoomable, timeX, timeTooltip } from '../charts.js';
import { bytes, esc, int, proto, sev, si, step, time, tz } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { ipLink, setNum } from './common.js';
import { kindText } from './alert.js';
import { t } from '../i18n.js';

/** Which side of the port the host is on. */
const sideLabel = (s) => ({ served: t('served'), used: t('used') })[s] ?? s;

export async function render(ctx) {
  const ip = ctx.id;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1>${t('Host')} <span class="mono" data-testid="host-ip">${esc(ip)}</span> <span class="sub" id="host-where"></span></h1>
    <p style="margin:0 0 12px"><a href="${link('flows', { ...gp, ip })}" data-testid="host-flows-link">${t('All flows of {ip} →', { ip: esc(ip) })}</a> <span class="sub" id="host-range"></span></p>
    <div class="kpis">
      <div class="kpi"><div class="label">${t('Bytes out (as source)')}</div><div class="value" data-testid="host-bytes-out">–</div></div>
      <div class="kpi"><div class="label">${t('Bytes in (as destination)')}</div><div class="value" data-testid="host-bytes-in">–</div></div>
      <div class="kpi"><div class="label">${t('Flow records')}</div><div class="value" data-testid="host-flows">–</div><div class="hint" id="host-flows-split"></div></div>
      <div class="kpi"><div class="label">${t('Alerts')}</div><div class="value" data-testid="host-alerts">–</div></div>
      <div class="kpi"><div class="label">${t('Violations')}</div><div class="value" data-testid="host-violations">–</div></div>
    </div>
    <div class="grid">
      <div class="panel"><h2>${t('Throughput (out ▲ / in ▼)')}</h2><div class="chart" id="ch-host"></div></div>
      <div class="grid cols-2">
        <div class="panel"><h2>${t('Peers')}</h2><table id="host-peers"><thead><tr><th>${t('Peer')}</th><th>${t('Country')}</th><th class="num">ASN</th><th class="num">${t('Out')}</th><th class="num">${t('In')}</th><th class="num">${t('Flows')}</th></tr></thead><tbody></tbody></table></div>
        <div class="panel"><h2>${t('Ports')}</h2><table id="host-ports"><thead><tr><th>${t('Side')}</th><th>${t('Proto')}</th><th class="num">${t('Port')}</th><th class="num">${t('Flows')}</th><th class="num">${t('Bytes')}</th><th class="num">${t('Peers')}</th></tr></thead><tbody></tbody></table></div>
      </div>
      <div class="grid cols-2">
        <div class="panel"><h2>${t('Alerts naming it')}</h2><table id="host-alerts-table"><thead><tr><th>${t('Last')}</th><th>${t('Severity')}</th><th>${t('Kind')}</th><th>${t('Source')}</th><th>${t('Destination')}</th><th>${t('Line')}</th></tr></thead><tbody></tbody></table></div>
        <div class="panel"><h2>${t('Violations naming it')}</h2><table id="host-violations-table"><thead><tr><th>${t('Last')}</th><th>${t('Severity')}</th><th>${t('Rule')}</th><th>${t('Source')}</th><th>${t('Destination')}</th><th>${t('Line')}</th></tr></thead><tbody></tbody></table></div>
      </div>
    </div>`;
  const ch = chart(ctx.el.querySelector('#ch-host'));
  const refresh = async (c) => {
    const h = await get(`hosts/${encodeURIComponent(ip)}`, { from: c.range.from, to: c.range.to, line: c.params.line });
    if (!c.isCurrent()) return;
    draw(c, h, ch);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, h, ch) {
  const $ = (s) => ctx.el.querySelector(s);
  const gp = globalParams(ctx.params);
  const tot = h.totals;
  // Country, AS, zone and lines are data (not for translation).
  const zone = tot.zone_out || tot.zone_in;
  const where = [
    esc(tot.country_out || tot.country_in),
    tot.asn_out || tot.asn_in ? `AS${esc(tot.asn_out || tot.asn_in)}` : '',
    zone ? t('zone {zone}', { zone: `<span translate="no">${esc(zone)}</span>` }) : '',
    (tot.lines || []).length ? `<span translate="no">${esc(tot.lines.join(', '))}</span>` : '',
  ].filter(Boolean);
  $('#host-where').innerHTML = where.join(' · ');
  $('#host-range').textContent = `${time(h.from)} → ${time(h.to)} ${tz()} · ${t('{step} buckets', { step: step(h.step) })}${tot.first_seen && Number(tot.flows_out) + Number(tot.flows_in) ? ` · ${t('seen {first} → {last}', { first: time(tot.first_seen), last: time(tot.last_seen) })}` : ''}`;
  setNum($('[data-testid=host-bytes-out]'), tot.bytes_out ?? 0, bytes);
  setNum($('[data-testid=host-bytes-in]'), tot.bytes_in ?? 0, bytes);
  setNum($('[data-testid=host-flows]'), Number(tot.flows_out ?? 0) + Number(tot.flows_in ?? 0), int);
  $('#host-flows-split').textContent = t('{out} out · {in} in', { out: int(tot.flows_out), in: int(tot.flows_in) });
  setNum($('[data-testid=host-alerts]'), h.alerts.length, int);
  setNum($('[data-testid=host-violations]'), h.violations.length, int);

  const times = [];
  for (let s = Math.floor(h.from / 1000); s < h.to / 1000; s += h.step) times.push(s);
  const idx = new Map(times.map((s, i) => [s, i]));
  const outs = new Array(times.length).fill(0);
  const ins = new Array(times.length).fill(0);
  for (const r of h.series) if (idx.has(r.t)) {
    outs[idx.get(r.t)] = (r.bytes_out * 8) / h.step;
    ins[idx.get(r.t)] = (-r.bytes_in * 8) / h.step;
  }
  const pts = (a) => a.map((v, i) => [times[i] * 1000, v]);
  ch.setOption(
    {
      ...base,
      tooltip: timeTooltip((v) => si(Math.abs(v), 'bit/s')),
      xAxis: timeX(h.from, h.to),
      yAxis: { type: 'value', ...axisStyle, axisLabel: { color: '#7d8aa5', formatter: (v) => si(Math.abs(v), 'bit/s') } },
      series: [
        { name: t('out'), type: 'line', areaStyle: { opacity: 0.25 }, symbol: 'none', color: '#38bdf8', data: pts(outs) },
        { name: t('in'), type: 'line', areaStyle: { opacity: 0.15 }, symbol: 'none', color: '#f59e0b', data: pts(ins) },
      ],
    },
    true,
  );
  zoomable(ch, (from, to) => update({ from, to, range: null }));

  $('#host-peers tbody').innerHTML = h.peers.length
    ? h.peers
        .map(
          (p) => `<tr data-peer="${esc(p.peer)}"><td>${ipLink(p.peer, gp)} <a class="muted" href="${link('host', gp, p.peer)}" title="${t('host page')}">⌂</a></td><td>${esc(p.country)}</td><td class="num">${p.asn || ''}</td>
          <td class="num" data-value="${p.bytes_out}">${bytes(p.bytes_out)}</td><td class="num" data-value="${p.bytes_in}">${bytes(p.bytes_in)}</td><td class="num">${int(p.flows)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="empty">${t('No traffic in this time range.')}</td></tr>`;
  const ports = [...h.ports_served.map((p) => ['served', p]), ...h.ports_used.map((p) => ['used', p])];
  $('#host-ports tbody').innerHTML = ports.length
    ? ports
        .map(
          ([side, p]) => `<tr data-side="${side}"><td>${sideLabel(side)}</td><td>${esc(proto(p.proto))}</td><td class="num">${p.port}</td><td class="num">${int(p.flows)}</td><td class="num">${bytes(p.bytes)}</td><td class="num">${int(p.peers)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="empty">${t('No traffic in this time range.')}</td></tr>`;
  $('#host-alerts-table tbody').innerHTML = h.alerts.length
    ? h.alerts
        .map(
          (a) => `<tr data-id="${esc(a.id)}"><td><a href="${link('alert', gp, a.id)}">${esc(time(a.last))}</a></td><td>${sev(a.severity)}</td><td>${esc(kindText(a.kind))}</td>
          <td translate="no">${ipLink(a.src, gp)}</td><td translate="no">${ipLink(a.dst, gp)}</td><td translate="no">${esc(a.line)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="empty">${t('No alert names it in this range.')}</td></tr>`;
  $('#host-violations-table tbody').innerHTML = h.violations.length
    ? h.violations
        .map(
          (v) => `<tr data-id="${esc(v.id)}"><td><a href="${link('violation', gp, v.id)}">${esc(time(v.last))}</a></td><td>${sev(v.severity)}</td><td translate="no">${esc(v.rule_id)}</td>
          <td>${ipLink(v.src, gp)}</td><td>${ipLink(v.dst, gp)}</td><td translate="no">${esc(v.line)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="empty">${t('No violation names it in this range.')}</td></tr>`;
}
