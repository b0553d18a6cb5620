// Chinese messages: violations (the list by rule and one violation).
export default {
  // The list.
  Rules: '规则',
  Severity: '级别',
  'All rules': '全部规则',
  Rule: '规则',
  Flows: '流数',
  '{n} matching': '匹配 {n} 条',
  '{n} matching rule {rule}': '规则 {rule} 匹配 {n} 条',
  '{n} violations': '{n} 次违规',
  '{n} flows': '{n} 条流',
  'last {time}': '最后于 {time}',
  'No violations in this time range.': '此时间范围内无违规。',
  'No violations match.': '没有匹配的违规。',
  // Violation kinds.
  deny: '命中拒绝规则',
  isolation: '违反区域隔离',
  deny_list: '命中黑名单',
  not_allow_listed: '不在白名单内',
  forbidden_port: '禁用的协议/端口',
  byte_cap: '超出流量上限',
  // What the line did.
  'dropped (enforce mode)': '已拦截（拦截模式）',
  'would be dropped (monitor mode)': '应拦截（监测模式）',
  'none (reported only)': '无（仅上报）',
  // One violation.
  'Rule {id}': '规则 {id}',
  Kind: '类型',
  'Action at the line': '线路处置动作',
  'Violation id': '违规 ID',
  'Evidence flows': '证据流',
  '{kind} under rule {rule}: {src} → {dst}.': '违反规则 {rule} 的{kind}：{src} → {dst}。',
};
