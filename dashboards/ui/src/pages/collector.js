// The collector's own health: spool, ClickHouse, detection lag, alert queue, webhook
// outbox — and every metric it exposes; live.
import { get } from '../api.js';
import { age, bytes, esc, int, time, tz } from '../fmt.js';

export async function render(ctx) {
  ctx.el.innerHTML = `
    <h1>Collector health <span class="sub" id="co-version"></span></h1>
    <div class="kpis">
      <div class="kpi"><div class="label">Spool: batches waiting</div><div class="value" data-testid="co-spool-batches">–</div><div class="hint" id="co-spool-bytes"></div></div>
      <div class="kpi"><div class="label">ClickHouse</div><div class="value" data-testid="co-clickhouse">–</div><div class="hint" id="co-insert"></div></div>
      <div class="kpi"><div class="label">Records stored</div><div class="value" data-testid="co-records">–</div><div class="hint" id="co-dead"></div></div>
      <div class="kpi"><div class="label">Detection lag</div><div class="value" data-testid="co-lag">–</div><div class="hint" id="co-detect"></div></div>
      <div class="kpi"><div class="label">Alert states waiting</div><div class="value" data-testid="co-store">–</div><div class="hint" id="co-outbox"></div></div>
    </div>
    <div class="panel"><h2>Every metric</h2><div class="scroll" style="max-height:none"><table id="co-metrics"><thead><tr><th>Metric</th><th>Labels</th><th class="num">Value</th></tr></thead><tbody></tbody></table></div></div>`;
  const refresh = async (c) => {
    const h = await get('collector');
    if (!c.isCurrent()) return;
    draw(c, h);
  };
  await refresh(ctx);
  // Health is about now, whatever range is selected: always refreshed.
  return refresh;
}

const set = (el, v, text) => {
  el.textContent = text;
  el.dataset.value = v === null || v === undefined ? '' : String(v);
};

function draw(ctx, h) {
  const $ = (s) => ctx.el.querySelector(s);
  $('#co-version').textContent = `version ${h.version} · up ${age(h.uptime_secs)}`;
  set($('[data-testid=co-spool-batches]'), h.spool.pending_batches, int(h.spool.pending_batches));
  $('#co-spool-bytes').textContent = `${bytes(h.spool.bytes ?? 0)} in the spool`;
  const down = h.clickhouse.down;
  const ch = $('[data-testid=co-clickhouse]');
  set(ch, down === null ? '' : down ? 'down' : 'up', down === null ? '–' : down ? 'failing inserts' : 'taking inserts');
  ch.classList.toggle('bad', !!down);
  $('#co-insert').textContent = `schema ${h.clickhouse.schema_version ?? '–'}${h.clickhouse.insert_seconds_mean != null ? ` · insert ${(h.clickhouse.insert_seconds_mean * 1000).toFixed(1)} ms mean` : ''} · ${int(h.clickhouse.insert_retries)} retries`;
  set($('[data-testid=co-records]'), h.clickhouse.records_committed, int(h.clickhouse.records_committed));
  $('#co-dead').textContent = `${int(h.clickhouse.batches_committed)} batches · ${int(h.clickhouse.dead_letters)} dead letters`;
  const lag = h.detection.event_time_lag_secs;
  set($('[data-testid=co-lag]'), lag, lag == null ? 'no records yet' : age(lag));
  const et = h.detection.event_time_secs;
  $('#co-detect').textContent = `${et ? `event time ${time(et * 1000)} ${tz()} (a replay lags by its age) · ` : ''}${int(h.detection.records)} records seen · ${int(h.detection.sink_errors)} sink errors`;
  set($('[data-testid=co-store]'), h.detection.alert_store_pending, int(h.detection.alert_store_pending));
  $('#co-outbox').textContent = h.webhook.outbox == null ? 'no webhook' : `webhook outbox ${int(h.webhook.outbox)} · delivered ${int(h.webhook.delivered)}`;
  $('#co-metrics tbody').innerHTML = h.metrics
    .map((m) => `<tr data-metric="${esc(m.name)}"><td class="mono">${esc(m.name)}</td><td class="mono muted">${esc(m.labels)}</td><td class="num">${esc(Number.isInteger(m.value) ? int(m.value) : m.value.toPrecision(6))}</td></tr>`)
    .join('');
}
