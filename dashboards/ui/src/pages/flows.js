// Top talkers (by source, destination or pair) and a paginated flow search.
import { del, get, put } from '../api.js';
import { axisStyle, base, chart } from '../charts.js';
import { bytes, esc, int, proto, si, time, toMs } from '../fmt.js';
import { can, globalParams, link, me, update } from '../state.js';
import { dirLabel, exportLinks, ipLink, isAddr, pager } from './common.js';
import { t } from '../i18n.js';

const LIMIT = 100;
// The search fields: name, label (in the language chosen, so read at render time), size,
// an example of what to type.
const fields = () => [
  ['ip', 'IP / CIDR', 22, '10.0.0.0/8'],
  ['port', t('Port'), 6, '443'],
  ['proto', t('Protocol'), 7, 'tcp'],
  ['country', t('Country'), 3, 'CC'],
  ['asn', 'ASN', 8, 'AS4134'],
  ['zone', t('Zone'), 10, 'domestic'],
  ['name', t('Name'), 16, 'example.com'],
];

/** Labels of the choices (their values stay the English words). */
const anyDirLabel = (d) => (d === 'any' ? t('any') : dirLabel(d));
const sortLabel = (s) => ({ first: t('first'), bytes: t('bytes'), packets: t('packets') })[s] ?? s;
const byLabel = (b) => ({ src: t('src'), dst: t('dst'), pair: t('pair') })[b] ?? b;
const metricLabel = (m) => ({ bytes: t('bytes'), packets: t('packets'), flows: t('flows') })[m] ?? m;

export async function render(ctx) {
  const p = ctx.params;
  const by = p.by || 'src';
  const metric = p.metric || 'bytes';
  ctx.el.innerHTML = `
    <h1>${esc(t('Top talkers & flows'))}</h1>
    <form class="panel toolbar" id="search" style="margin-bottom:12px">
      <div class="filter-row">
        <label class="grow">${t('Filter')} <input name="q" id="q-expr" class="mono" translate="no" spellcheck="false" autocomplete="off" placeholder="dst = 10.0.0.0/8 and dport in (22, 3389) and bytes > 1M" value="${esc(p.q ?? '')}"></label>
        <select id="q-saved" title="${t('Saved filters')}"><option value="">${t('Saved filters…')}</option></select>
        <button type="button" id="q-save" title="${t('Save this filter under a name')}">${t('Save…')}</button>
        <button type="button" id="q-delete" title="${t('Delete the selected saved filter')}" disabled>${t('Delete')}</button>
        <button type="button" id="q-copy" title="${t('Copy a link to this view (range, filters)')}">${t('Copy link')}</button>
        <button type="button" id="q-help-toggle" title="${t('Filter syntax')}">?</button>
      </div>
      <div class="error" id="q-error" hidden></div>
      <div class="filter-help muted" id="q-help" hidden>${help()}</div>
      ${fields().map(([k, l, n, ph]) => `<label>${l} <input name="${k}" id="q-${k}" size="${n}" translate="no" placeholder="${ph}" value="${esc(p[k] ?? '')}"></label>`).join('')}
      <label>${t('Direction')} <select name="direction" id="q-direction">${['any', 'ingress', 'egress'].map((d) => `<option value="${d}"${(p.direction || 'any') === d ? ' selected' : ''}>${anyDirLabel(d)}</option>`).join('')}</select></label>
      <label>${t('Sort')} <select name="sort" id="q-sort">${['first', 'bytes', 'packets'].map((d) => `<option value="${d}"${(p.sort || 'first') === d ? ' selected' : ''}>${sortLabel(d)}</option>`).join('')}</select></label>
      <button class="primary" type="submit" id="q-submit">${t('Search')}</button>
      <button type="button" id="q-clear">${t('Clear')}</button>
    </form>
    <div class="grid cols-2">
      <div class="panel">
        <div class="toolbar"><h2 style="margin:0">${t('Top talkers')}</h2><span class="spacer"></span>
          <div class="seg" id="by">${['src', 'dst', 'pair'].map((b) => `<button data-by="${b}" class="${b === by ? 'on' : ''}">${byLabel(b)}</button>`).join('')}</div>
          <div class="seg" id="metric">${['bytes', 'packets', 'flows'].map((m) => `<button data-metric="${m}" class="${m === metric ? 'on' : ''}">${metricLabel(m)}</button>`).join('')}</div></div>
        <div class="chart" id="ch-top" style="height:300px"></div>
      </div>
      <div class="panel"><h2>${t('Top talkers table')}</h2><div class="scroll" style="max-height:310px"><table id="top-table"><thead></thead><tbody></tbody></table></div></div>
    </div>
    <div class="panel" style="margin-top:12px"><h2>${t('Flow records')} <span class="muted" id="flow-total"></span> <span class="export" id="flow-export"></span>${isAddr(p.ip) ? ` <a class="export" href="${link('host', globalParams(p), p.ip)}" data-testid="flows-host">${t('Host page of {ip} →', { ip: esc(p.ip) })}</a>` : ''}</h2>
      <div class="scroll" style="max-height:none"><table id="flows-table"><thead><tr><th>${t('First')}</th><th class="num">${t('Duration')}</th><th>${t('Line')}</th><th>${t('Dir')}</th><th>${t('Source')}</th><th></th><th>${t('Destination')}</th><th></th><th>${t('Proto')}</th><th>${t('Flags')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Bytes')}</th><th>${t('Name')}</th><th>${t('Probe / exporter')}</th></tr></thead><tbody></tbody></table></div>
      <div class="pager" id="pager"></div></div>`;
  ctx.el.querySelector('#search').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    if (f.direction === 'any') f.direction = null;
    if (f.sort === 'first') f.sort = null;
    update({ ...f, offset: null });
  });
  ctx.el.querySelector('#q-clear').addEventListener('click', () => update({ q: null, ip: null, port: null, proto: null, country: null, asn: null, zone: null, name: null, direction: null, sort: null, offset: null }));
  ctx.el.querySelector('#by').addEventListener('click', (e) => e.target.dataset.by && update({ by: e.target.dataset.by }));
  ctx.el.querySelector('#metric').addEventListener('click', (e) => e.target.dataset.metric && update({ metric: e.target.dataset.metric }));
  savedFilters(ctx, p.q);
  const top = chart(ctx.el.querySelector('#ch-top'));
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: p.line, q: p.q, ip: p.ip, port: p.port, proto: p.proto, country: p.country, asn: p.asn, zone: p.zone, name: p.name, direction: p.direction };
    const offset = Number(p.offset) || 0;
    const qError = c.el.querySelector('#q-error');
    let tt;
    let f;
    qError.hidden = true;
    try {
      [tt, f] = await Promise.all([get('top-talkers', { ...q, by, metric, limit: 20 }), get('flows', { ...q, sort: p.sort, limit: LIMIT, offset })]);
    } catch (e) {
      // A mistake in the expression is shown under it, with the rest of the page kept.
      if (e.parameter !== 'q' || !c.isCurrent()) throw e;
      qError.innerHTML = t('Filter: {error}', { error: `<span translate="no">${esc(e.message.replace(/^parameter q: /, ''))}</span>` });
      qError.hidden = false;
      tt = { by, metric, items: [] };
      f = { total: 0, packets: 0, bytes: 0, items: [] };
    }
    if (!c.isCurrent()) return;
    drawTop(c, tt, top);
    drawFlows(c, f, offset);
    exportLinks(c.el.querySelector('#flow-export'), 'flows', { ...q, sort: p.sort });
  };
  await refresh(ctx);
  return refresh;
}

// The filter syntax, written at render time (in the language chosen); field names,
// operators and examples stay as they are typed.
const code = (s) => `<code translate="no">${s}</code>`;
const help = () => `<p><b>${t('Terms')}</b> ${t('{term} with {ops} (contains), or {list}; combine with {and} (or just a space), {or}, {not} and parentheses. Quote values with spaces: {quoted}.', {
  term: code('field op value'),
  ops: ['=', '!=', '&lt;', '&lt;=', '&gt;', '&gt;=', '~'].map(code).join(' '),
  list: code('field in (a, b)'),
  and: code('and'),
  or: code('or'),
  not: code('not'),
  quoted: code('line = "hk 1"'),
})}</p>
<p><b>${t('Fields')}</b> ${code('ip src dst')} ${t('(address or CIDR)')} · ${code('port sport dport proto')} · ${code('packets bytes')} (10k, 1.5M) · ${code('duration')} (250ms, 2s, 5m) · ${code('flags')} (syn, syn+ack) · ${code('country src_country dst_country asn src_asn dst_asn zone src_zone dst_zone')} · ${code('line probe direction source verdict enforce_rule')} · ${code('name')} ${t('(a domain and names under it)')} ${code('dns_qname dns_qtype dns_rcode tls_sni')} · ${code('vlan icmp_type icmp_code sampling')} · ${code('tunnel tunnel_id outer_ip outer_src outer_dst')} ${t('(decapsulated flows)')}. ${t('{fields} match either end; their {ne} means neither.', {
  fields: ['ip', 'port', 'country', 'asn', 'zone'].map(code).join(', '),
  ne: code('!='),
})}</p>
<p><b>${t('Examples')}</b> ${code('country != CN and bytes &gt; 10M')} · ${code('flags = syn packets &lt; 3 not port in (80, 443)')} · ${code('name ~ bank or dns_rcode = nxdomain')}</p>`;

/** The saved-filter menu: own filters and shared ones; choosing one applies it. */
async function savedFilters(ctx, current) {
  const sel = ctx.el.querySelector('#q-saved');
  const delBtn = ctx.el.querySelector('#q-delete');
  const input = ctx.el.querySelector('#q-expr');
  let items = [];
  const fill = async () => {
    items = (await get('filters')).items;
    sel.innerHTML = `<option value="">${t('Saved filters…')}</option>${items
      .map((f, i) => `<option value="${i}" translate="no"${f.q === current ? ' selected' : ''}>${esc(f.owner === me.name ? f.name : `${f.name} (${f.owner})`)}${f.shared ? ` · ${t('shared')}` : ''}</option>`)
      .join('')}`;
    const chosen = items[Number(sel.value)];
    delBtn.disabled = !chosen || chosen.owner !== me.name;
  };
  sel.addEventListener('change', () => {
    const f = items[Number(sel.value)];
    if (f) update({ q: f.q, offset: null });
  });
  ctx.el.querySelector('#q-save').addEventListener('click', async () => {
    const q = input.value.trim();
    if (!q) return;
    const name = window.prompt(t('Save this filter as'), items[Number(sel.value)]?.name ?? '');
    if (!name) return;
    const shared = can('analyst') && window.confirm(t('Share it with every console user?'));
    const err = ctx.el.querySelector('#q-error');
    try {
      await put(`filters/${encodeURIComponent(name.trim())}`, { q, shared });
      err.hidden = true;
      current = q;
      await fill();
    } catch (e) {
      err.innerHTML = t('Saving: {error}', { error: `<span translate="no">${esc(e.message)}</span>` });
      err.hidden = false;
    }
  });
  delBtn.addEventListener('click', async () => {
    const f = items[Number(sel.value)];
    if (!f || f.owner !== me.name) return;
    await del(`filters/${encodeURIComponent(f.name)}`);
    await fill();
  });
  ctx.el.querySelector('#q-copy').addEventListener('click', async (e) => {
    // The page's URL already holds every filter and the time range.
    const btn = e.currentTarget;
    try {
      await navigator.clipboard.writeText(location.href);
      btn.textContent = t('Copied');
    } catch {
      window.prompt(t('Copy this link'), location.href);
    }
  });
  ctx.el.querySelector('#q-help-toggle').addEventListener('click', () => {
    const h = ctx.el.querySelector('#q-help');
    h.hidden = !h.hidden;
  });
  await fill();
}

function who(r, by) {
  if (by === 'pair') return `${r.src} → ${r.dst}`;
  return by === 'src' ? r.src : r.dst;
}

function drawTop(ctx, top, c) {
  const items = top.items;
  const fmt = top.metric === 'bytes' ? (v) => bytes(v) : (v) => si(v);
  c.setOption(
    {
      ...base,
      grid: { left: 10, right: 60, top: 8, bottom: 8, containLabel: true },
      tooltip: { ...base.tooltip, trigger: 'item', formatter: (p) => `${esc(p.name)}<br>${fmt(p.value)}` },
      xAxis: { type: 'value', ...axisStyle, axisLabel: { color: '#7d8aa5', formatter: fmt } },
      yAxis: { type: 'category', inverse: true, data: items.map((r) => who(r, top.by)), ...axisStyle, axisLabel: { color: '#aab4c8', fontFamily: 'monospace', fontSize: 11, width: 230, overflow: 'truncate' } },
      series: [{ type: 'bar', data: items.map((r) => r[top.metric]), itemStyle: { color: '#38bdf8', borderRadius: [0, 3, 3, 0] }, label: { show: true, position: 'right', color: '#7d8aa5', formatter: (p) => fmt(p.value) } }],
    },
    true,
  );
  const head = top.by === 'pair' ? `<th>${t('Source')}</th><th>${t('Destination')}</th><th class="num">${t('Ports')}</th>` : `<th>${top.by === 'src' ? t('Source') : t('Destination')}</th><th>${t('Country')}</th><th class="num">${t('Peers')}</th>`;
  ctx.el.querySelector('#top-table thead').innerHTML = `<tr><th>#</th>${head}<th class="num">${t('Bytes')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Flows')}</th></tr>`;
  ctx.el.querySelector('#top-table tbody').innerHTML = items.length
    ? items
        .map((r, i) => {
          const ip = top.by === 'dst' ? r.dst : r.src;
          const cells =
            top.by === 'pair'
              ? `<td class="mono">${esc(r.src)}</td><td class="mono">${esc(r.dst)}</td><td class="num">${int(r.ports)}</td>`
              : `<td class="mono"><a href="#" data-ip="${esc(ip)}">${esc(ip)}</a></td><td>${esc(r[`${top.by}_country`] || '')}</td><td class="num">${int(r.peers)}</td>`;
          return `<tr><td class="muted">${i + 1}</td>${cells}<td class="num" data-value="${r.bytes}">${bytes(r.bytes)}</td><td class="num">${int(r.packets)}</td><td class="num">${int(r.flows)}</td></tr>`;
        })
        .join('')
    : `<tr><td colspan="7" class="empty">${t('No traffic matches.')}</td></tr>`;
  ctx.el.querySelector('#top-table tbody').onclick = (e) => {
    if (e.target.dataset.ip) {
      e.preventDefault();
      update({ ip: e.target.dataset.ip, offset: null });
    }
  };
}

// An exporter's records say which protocol brought them, and their sampling (counts
// are already scaled up by it).
function origin(r) {
  if (!r.source || r.source === 'probe') return '';
  const rate = r.sampling > 1 ? ` 1:${int(r.sampling)}` : '';
  return ` <span class="tag" data-source="${esc(r.source)}">${esc(sourceLabel(r.source))}${rate}</span>`;
}

// The tunnel a decapsulated flow came through (kind, id, endpoints); a click on the tag
// searches for the tunnel's flows.
const TUNNELS = { gre: 'GRE', vxlan: 'VXLAN', 'gtp-u': 'GTP-U', 'ip-in-ip': 'IP-in-IP' };
function tunnel(r) {
  if (!r.tunnel) return '';
  const id = r.tunnel_id ? ` ${r.tunnel_id}` : '';
  const ends = r.outer_src || r.outer_dst ? `${r.outer_src} → ${r.outer_dst}` : '';
  const q = `tunnel = ${r.tunnel}${r.tunnel_id ? ` tunnel_id = ${r.tunnel_id}` : ''}`;
  return ` <a href="#" class="tag" data-tunnel="${esc(q)}" title="${esc(ends)}" translate="no">${esc(TUNNELS[r.tunnel] ?? r.tunnel)}${esc(id)}</a>`;
}

/** An exporter protocol's label. */
const sourceLabel = (s) => ({ netflow_v5: t('netflow v5'), netflow_v9: t('netflow v9'), ipfix: t('ipfix') })[s] ?? s.replace('_', ' ');

// DNS question (with its type and, for answers, response code) or TLS server name; a
// click searches for flows of that name.
const QTYPES = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 65: 'HTTPS', 255: 'ANY' };
const RCODES = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };
function appName(r) {
  if (r.dns_qname) {
    const qt = QTYPES[r.dns_qtype] || t('type {n}', { n: r.dns_qtype });
    const rc = r.dns_rcode >= 0 ? ` ${RCODES[r.dns_rcode] || t('rcode {n}', { n: r.dns_rcode })}` : '';
    return `<a href="#" class="mono" data-name="${esc(r.dns_qname)}" translate="no">${esc(r.dns_qname)}</a> <span class="tag" data-app="dns">DNS ${esc(qt)}${esc(rc)}</span>`;
  }
  if (r.tls_sni) return `<a href="#" class="mono" data-name="${esc(r.tls_sni)}" translate="no">${esc(r.tls_sni)}</a> <span class="tag" data-app="tls">TLS</span>`;
  return '';
}

/** The title of a pivot: "only <field> <value>". */
const only = (field, v) =>
  ({
    line: () => t('only line {v}', { v }),
    proto: () => t('only proto {v}', { v }),
    country: () => t('only country {v}', { v }),
    asn: () => t('only asn {v}', { v }),
    zone: () => t('only zone {v}', { v }),
  })[field]();

/** A value that filters the search when clicked (data: not for translation). */
function pivot(field, text, value = text) {
  if (text === '' || text === null || text === undefined || value === 0) return esc(text ?? '');
  return `<a href="#" class="pivot" data-pivot="${field}" data-value="${esc(value)}" title="${esc(only(field, text))}" translate="no">${esc(text)}</a>`;
}

/** Country, AS and zone of an end, each a filter. */
const where = (cc, asn, zone) => [cc ? pivot('country', cc) : '', asn ? pivot('asn', `AS${asn}`, asn) : '', zone ? pivot('zone', zone) : ''].filter(Boolean).join(' ');

/** Last minus first packet. */
function duration(r) {
  const a = toMs(r.first);
  const b = toMs(r.last);
  if (a === null || b === null) return '';
  const s = Math.max(0, b - a) / 1000;
  return s < 10 ? s.toFixed(3) + ' s' : s < 3600 ? s.toFixed(0) + ' s' : (s / 3600).toFixed(1) + ' h';
}

/** TCP flags seen (OR of every packet) as letters; ICMP type/code. */
function flags(r) {
  if (r.proto === 6) {
    const names = [[0x01, 'F'], [0x02, 'S'], [0x04, 'R'], [0x08, 'P'], [0x10, 'A'], [0x20, 'U'], [0x40, 'E'], [0x80, 'C']];
    return names.filter(([b]) => r.tcp_flags & b).map(([, n]) => n).join('');
  }
  if ((r.proto === 1 || r.proto === 58) && r.icmp_type !== null && r.icmp_type !== undefined) return t('type {n}', { n: `${r.icmp_type}/${r.icmp_code ?? 0}` });
  return '';
}

function drawFlows(ctx, f, offset) {
  const gp = globalParams(ctx.params);
  const total = ctx.el.querySelector('#flow-total');
  total.textContent = t('{n} records · {p} packets · {b}', { n: int(f.total), p: int(f.packets), b: bytes(f.bytes) });
  total.dataset.value = f.total;
  total.dataset.bytes = f.bytes;
  ctx.el.querySelector('#flows-table tbody').innerHTML = f.items.length
    ? f.items
        .map(
          (r) => `<tr><td title="${t('last {time}', { time: esc(time(r.last)) })}">${esc(time(r.first))}</td><td class="num">${duration(r)}</td><td>${pivot('line', r.line)}</td><td>${r.direction === 'ingress' ? t('▲ in') : t('▼ out')}</td>
      <td class="mono">${ipLink(r.src, gp, r.sport)}</td><td class="muted">${where(r.src_country, r.src_asn, r.src_zone)}</td><td class="mono">${ipLink(r.dst, gp, r.dport)}</td><td class="muted">${where(r.dst_country, r.dst_asn, r.dst_zone)}</td>
      <td>${pivot('proto', proto(r.proto), r.proto)}</td><td class="mono">${flags(r)}</td><td class="num">${int(r.packets)}</td><td class="num">${bytes(r.bytes)}</td><td>${appName(r)}</td><td class="muted"><span translate="no">${esc(r.probe_id)}</span>${origin(r)}${tunnel(r)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="14" class="empty">${t('No flow records match.')}</td></tr>`;
  ctx.el.querySelector('#flows-table tbody').onclick = (e) => {
    const d = e.target.dataset;
    if (d.name) {
      e.preventDefault();
      update({ name: d.name, offset: null });
    } else if (d.pivot) {
      // Country, ASN, zone, line and protocol are filters too.
      e.preventDefault();
      update({ [d.pivot]: d.value, offset: null });
    } else if (d.tunnel) {
      // A tunnel tag searches for that tunnel's flows (as a filter expression).
      e.preventDefault();
      update({ q: d.tunnel, offset: null });
    }
  };
  pager(ctx.el.querySelector('#pager'), f.total, LIMIT, offset);
}
