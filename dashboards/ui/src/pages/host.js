// One address from every side: traffic out (as source) and in (as destination) over
// time, where it is, its peers and ports, and the alerts and violations naming it.
import { get } from '../api.js';
import { axisStyle, base, chart, zoomable, timeX, timeTooltip } from '../charts.js';
import { bytes, esc, int, proto, sev, si, step, time, tz } from '../fmt.js';
import { globalParams, link, update } from '../state.js';
import { ipLink, setNum } from './common.js';

export async function render(ctx) {
  const ip = ctx.id;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1>Host <span class="mono" data-testid="host-ip">${esc(ip)}</span> <span class="sub" id="host-where"></span></h1>
    <p style="margin:0 0 12px"><a href="${link('flows', { ...gp, ip })}" data-testid="host-flows-link">All flows of ${esc(ip)} →</a> <span class="sub" id="host-range"></span></p>
    <div class="kpis">
      <div class="kpi"><div class="label">Bytes out (as source)</div><div class="value" data-testid="host-bytes-out">–</div></div>
      <div class="kpi"><div class="label">Bytes in (as destination)</div><div class="value" data-testid="host-bytes-in">–</div></div>
      <div class="kpi"><div class="label">Flow records</div><div class="value" data-testid="host-flows">–</div><div class="hint" id="host-flows-split"></div></div>
      <div class="kpi"><div class="label">Alerts</div><div class="value" data-testid="host-alerts">–</div></div>
      <div class="kpi"><div class="label">Violations</div><div class="value" data-testid="host-violations">–</div></div>
    </div>
    <div class="grid">
      <div class="panel"><h2>Throughput (out ▲ / in ▼)</h2><div class="chart" id="ch-host"></div></div>
      <div class="grid cols-2">
        <div class="panel"><h2>Peers</h2><table id="host-peers"><thead><tr><th>Peer</th><th>Country</th><th class="num">ASN</th><th class="num">Out</th><th class="num">In</th><th class="num">Flows</th></tr></thead><tbody></tbody></table></div>
        <div class="panel"><h2>Ports</h2><table id="host-ports"><thead><tr><th>Side</th><th>Proto</th><th class="num">Port</th><th class="num">Flows</th><th class="num">Bytes</th><th class="num">Peers</th></tr></thead><tbody></tbody></table></div>
      </div>
      <div class="grid cols-2">
        <div class="panel"><h2>Alerts naming it</h2><table id="host-alerts-table"><thead><tr><th>Last</th><th>Severity</th><th>Kind</th><th>Source</th><th>Destination</th><th>Line</th></tr></thead><tbody></tbody></table></div>
        <div class="panel"><h2>Violations naming it</h2><table id="host-violations-table"><thead><tr><th>Last</th><th>Severity</th><th>Rule</th><th>Source</th><th>Destination</th><th>Line</th></tr></thead><tbody></tbody></table></div>
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
  const t = h.totals;
  const where = [t.country_out || t.country_in, t.asn_out || t.asn_in ? `AS${t.asn_out || t.asn_in}` : '', t.zone_out || t.zone_in ? `zone ${t.zone_out || t.zone_in}` : '', (t.lines || []).join(', ')].filter(Boolean);
  $('#host-where').textContent = where.join(' · ');
  $('#host-range').textContent = `${time(h.from)} → ${time(h.to)} ${tz()} · ${step(h.step)} buckets${t.first_seen && Number(t.flows_out) + Number(t.flows_in) ? ` · seen ${time(t.first_seen)} → ${time(t.last_seen)}` : ''}`;
  setNum($('[data-testid=host-bytes-out]'), t.bytes_out ?? 0, bytes);
  setNum($('[data-testid=host-bytes-in]'), t.bytes_in ?? 0, bytes);
  setNum($('[data-testid=host-flows]'), Number(t.flows_out ?? 0) + Number(t.flows_in ?? 0), int);
  $('#host-flows-split').textContent = `${int(t.flows_out)} out · ${int(t.flows_in)} in`;
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
        { name: 'out', type: 'line', areaStyle: { opacity: 0.25 }, symbol: 'none', color: '#38bdf8', data: pts(outs) },
        { name: 'in', type: 'line', areaStyle: { opacity: 0.15 }, symbol: 'none', color: '#f59e0b', data: pts(ins) },
      ],
    },
    true,
  );
  zoomable(ch, (from, to) => update({ from, to, range: null }));

  $('#host-peers tbody').innerHTML = h.peers.length
    ? h.peers
        .map(
          (p) => `<tr data-peer="${esc(p.peer)}"><td>${ipLink(p.peer, gp)} <a class="muted" href="${link('host', gp, p.peer)}" title="host page">⌂</a></td><td>${esc(p.country)}</td><td class="num">${p.asn || ''}</td>
          <td class="num" data-value="${p.bytes_out}">${bytes(p.bytes_out)}</td><td class="num" data-value="${p.bytes_in}">${bytes(p.bytes_in)}</td><td class="num">${int(p.flows)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6" class="empty">No traffic in this time range.</td></tr>';
  const ports = [...h.ports_served.map((p) => ['served', p]), ...h.ports_used.map((p) => ['used', p])];
  $('#host-ports tbody').innerHTML = ports.length
    ? ports
        .map(
          ([side, p]) => `<tr data-side="${side}"><td>${side}</td><td>${esc(proto(p.proto))}</td><td class="num">${p.port}</td><td class="num">${int(p.flows)}</td><td class="num">${bytes(p.bytes)}</td><td class="num">${int(p.peers)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6" class="empty">No traffic in this time range.</td></tr>';
  $('#host-alerts-table tbody').innerHTML = h.alerts.length
    ? h.alerts
        .map(
          (a) => `<tr data-id="${esc(a.id)}"><td><a href="${link('alert', gp, a.id)}">${esc(time(a.last))}</a></td><td>${sev(a.severity)}</td><td>${esc(a.kind)}</td>
          <td>${ipLink(a.src, gp)}</td><td>${ipLink(a.dst, gp)}</td><td>${esc(a.line)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6" class="empty">No alert names it in this range.</td></tr>';
  $('#host-violations-table tbody').innerHTML = h.violations.length
    ? h.violations
        .map(
          (v) => `<tr data-id="${esc(v.id)}"><td><a href="${link('violation', gp, v.id)}">${esc(time(v.last))}</a></td><td>${sev(v.severity)}</td><td>${esc(v.rule_id)}</td>
          <td>${ipLink(v.src, gp)}</td><td>${ipLink(v.dst, gp)}</td><td>${esc(v.line)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6" class="empty">No violation names it in this range.</td></tr>';
}
