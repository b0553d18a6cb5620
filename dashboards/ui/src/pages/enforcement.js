import { can } from '../state.js';
// Enforcement at the lines: the policy version the collector publishes and which version
// each probe enforces, per-rule counters (dropped / would drop) and the top dropped
// sources for the selected range, and manual blocks for incident response.
import { ApiError, del, get, post } from '../api.js';
import { bytes, esc, int, time } from '../fmt.js';

export async function render(ctx) {
  let st;
  try {
    st = await get('enforce/status');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      ctx.el.innerHTML = `<h1>Enforcement</h1><div class="empty">This collector has no policy ([policy] file), so nothing is enforced at the lines.</div>`;
      return;
    }
    throw e;
  }
  if (!ctx.isCurrent()) return;
  ctx.el.innerHTML = `
    <h1>Enforcement <span class="sub" id="enf-plan"></span></h1>
    <div class="grid cols-2">
      <div class="panel"><h2>Policy at the lines</h2><div id="enf-status"></div></div>
      <div class="panel"><h2>Manual blocks</h2>
        ${can('admin') ? '' : '<p class="muted" data-testid="blocks-read-only">Placing and lifting blocks needs the admin role.</p>'}
        <form id="block-form" class="toolbar"${can('admin') ? '' : ' hidden'}>
          <input id="block-cidr" placeholder="CIDR, e.g. 203.0.113.7/32" size="22" required>
          <label>for <input id="block-minutes" type="number" min="1" max="43200" value="60" style="width:6em"> min</label>
          <input id="block-reason" placeholder="Reason (kept as evidence)" size="24">
          <button class="primary" type="submit">Block</button>
        </form>
        <div class="error" id="block-error" hidden></div>
        <div id="blocks"></div>
      </div>
    </div>
    <div class="grid cols-2" style="margin-top:12px">
      <div class="panel"><h2>Per rule</h2><div style="overflow-x:auto"><table data-testid="enforce-rules"><thead><tr>
        <th>Rule</th><th>Verdict</th><th class="num">Flows</th><th class="num">Packets</th><th class="num">Bytes</th><th class="num">Sources</th><th>Last</th>
      </tr></thead><tbody></tbody></table></div></div>
      <div class="panel"><h2>Top dropped sources</h2><div style="overflow-x:auto"><table data-testid="enforce-top"><thead><tr>
        <th>Source</th><th>Verdict</th><th>Rules</th><th class="num">Flows</th><th class="num">Packets</th><th class="num">Bytes</th>
      </tr></thead><tbody></tbody></table></div></div>
    </div>`;
  const form = ctx.el.querySelector('#block-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = ctx.el.querySelector('#block-error');
    err.hidden = true;
    try {
      await post('enforce/blocks', {
        cidr: ctx.el.querySelector('#block-cidr').value.trim(),
        expires_secs: Math.round(Number(ctx.el.querySelector('#block-minutes').value) * 60),
        reason: ctx.el.querySelector('#block-reason').value,
      });
      form.reset();
      await refresh(ctx);
    } catch (x) {
      err.textContent = x.message;
      err.hidden = false;
    }
  });
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: c.params.line };
    const [s, r] = await Promise.all([get('enforce/status'), get('enforce/rules', q)]);
    if (!c.isCurrent()) return;
    draw(c, s, r);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, s, r) {
  const el = ctx.el;
  const p = s.plan;
  el.querySelector('#enf-plan').textContent = `policy version ${p.version} · ${p.cause}`;
  const probes = Object.entries(s.probes);
  el.querySelector('#enf-status').innerHTML = `
    <table class="facts"><tbody>
      <tr><th>Published</th><td>${esc(time(p.published_ns / 1e6))}</td></tr>
      <tr><th>Default mode</th><td data-testid="enforce-mode">${esc(p.default_mode)}</td></tr>
      <tr><th>Lines</th><td>${p.lines.length ? p.lines.map(([n, m]) => `${esc(n)}: ${esc(m)}`).join(', ') : 'all in the default mode'}</td></tr>
      <tr><th>Dropping rules</th><td class="mono">${p.drop_rules.length ? p.drop_rules.map(esc).join(', ') : 'none'}</td></tr>
      <tr><th>Prefixes</th><td>${int(p.prefixes)}</td></tr>
    </tbody></table>
    <table data-testid="enforce-probes" style="margin-top:8px"><thead><tr><th>Probe</th><th>Enforces</th><th>Connected</th><th class="num">Applied after</th><th>Problem</th></tr></thead><tbody>
    ${
      probes.length
        ? probes
            .map(
              ([id, e]) => `<tr><td class="mono">${esc(id)}</td>
        <td>${e.version === p.version ? '<span class="ok">current</span>' : e.version ? `older (${e.version})` : 'nothing'}</td>
        <td>${e.connected ? 'yes' : '<b>no</b> (keeps its last plan while running; passes everything once stopped)'}</td>
        <td class="num">${e.applied_after_secs == null ? '–' : (e.applied_after_secs * 1000).toFixed(0) + ' ms'}</td>
        <td>${e.failed ? esc(`version ${e.failed[0]}: ${e.failed[1]}`) : ''}</td></tr>`,
            )
            .join('')
        : '<tr><td colspan="5" class="muted">No probe enforces (probes need [ebpf] enforce = true).</td></tr>'
    }</tbody></table>`;
  const blocks = s.blocks;
  el.querySelector('#blocks').innerHTML = blocks.length
    ? `<table data-testid="enforce-blocks"><thead><tr><th>Range</th><th>Until</th><th>By</th><th>Reason</th><th></th></tr></thead><tbody>
      ${blocks
        .map(
          (b) => `<tr><td class="mono">${esc(b.cidr)}</td><td>${esc(time(b.expires_ns / 1e6))}</td><td>${esc(b.created_by)}</td>
        <td>${esc(b.reason)}</td><td>${can('admin') ? `<button data-lift="${esc(b.id)}">Lift</button>` : ''}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<div class="muted">No manual blocks.</div>';
  for (const b of el.querySelectorAll('[data-lift]')) {
    b.addEventListener('click', async () => {
      await del(`enforce/blocks/${encodeURIComponent(b.dataset.lift)}`);
      const s2 = await get('enforce/status');
      draw(ctx, s2, r);
    });
  }
  el.querySelector('[data-testid="enforce-rules"] tbody').innerHTML = r.rules.length
    ? r.rules
        .map(
          (x) => `<tr><td class="mono">${esc(x.rule)}</td><td>${esc(x.verdict)}</td><td class="num">${int(x.flows)}</td>
      <td class="num" data-value="${esc(x.packets)}">${int(x.packets)}</td><td class="num">${bytes(x.bytes)}</td>
      <td class="num">${int(x.sources)}</td><td>${esc(time(x.last_seen))}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="7" class="muted">Nothing dropped or counted as would-drop in this range.</td></tr>';
  el.querySelector('[data-testid="enforce-top"] tbody').innerHTML = r.top_sources.length
    ? r.top_sources
        .map(
          (x) => `<tr><td class="mono">${esc(x.src.replace(/^::ffff:/, ''))}</td><td>${esc(x.verdict)}</td>
      <td class="mono">${x.rules.map(esc).join(', ')}</td><td class="num">${int(x.flows)}</td>
      <td class="num">${int(x.packets)}</td><td class="num">${bytes(x.bytes)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6" class="muted">No dropped sources in this range.</td></tr>';
}
