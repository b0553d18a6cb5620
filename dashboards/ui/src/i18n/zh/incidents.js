// Chinese messages: incidents.
export default {
  'Findings belong together within': '间隔不超过以下时长的发现归为同一事件',
  Subject: '对象',
  'Kinds / rules': '类型 / 规则',
  Violations: '违规',
  '{n} incidents': '{n} 个事件',
  'rule {rule}': '规则 {rule}',
  'host page': '主机页面',
  'findings →': '查看发现 →',
  'No incident in this time range.': '此时间范围内无事件。',
};
