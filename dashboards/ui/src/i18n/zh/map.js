// Chinese messages: map.
export default {
  'traffic by country pair; markers: countries with alerts': '按国家/地区对统计的流量；标记：有告警的国家/地区',
  'Country pairs': '国家/地区对',
  'Alerts by country': '各国家/地区告警',
  Country: '国家/地区',
  Highest: '最高级别',
  'local / unknown': '本地 / 未知',
  'more bytes': '字节数越多',
  '{n} alerts, highest {severity}': '{n} 条告警，最高级别：{severity}',
  'traffic by country pair (local and unknown addresses drawn at {home}); markers: countries with alerts':
    '按国家/地区对统计的流量（本地及未知地址绘制于 {home}）；标记：有告警的国家/地区',
  'No traffic in this time range.': '此时间范围内无流量。',
  'No alerts with a known country.': '没有可确定国家/地区的告警。',
};
