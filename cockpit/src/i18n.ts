// Labels in English and Chinese. Keys are English-ish ids; a missing key shows itself,
// so a gap is visible rather than blank.

export type Lang = 'en' | 'zh';

const LANG_KEY = 'citybrain.lang';

const labels: Record<string, { en: string; zh: string }> = {
  title: { en: 'citybrain cockpit', zh: '城市大脑 驾驶舱' },
  'nav.overview': { en: 'Overview', zh: '总览' },
  'nav.traffic': { en: 'Traffic', zh: '交通' },
  'nav.parking': { en: 'Parking', zh: '停车' },
  'nav.data': { en: 'Data', zh: '数据' },
  'nav.policy': { en: 'Policies', zh: '惠企政策' },
  'policy.title': { en: 'Policy delivery: paid per policy', zh: '政策兑付：各政策兑付金额' },
  'policy.table': { en: 'Every loaded policy', zh: '全部在册政策' },
  'policy.loaded': { en: 'Policies loaded', zh: '在册政策' },
  'policy.firms': { en: 'Enterprises paid', zh: '获兑付企业' },
  'policy.total': { en: 'Paid in all', zh: '累计兑付' },
  'policy.paying': { en: 'Policies that paid', zh: '已兑付政策' },
  'policy.none': {
    en: 'No payout run yet: a market admin runs `citybrain policy pay --run NAME` (or POST /api/v1/policy/runs) and every policy is decided and paid, once.',
    zh: '尚无兑付批次：由市场监管部门管理员执行 `citybrain policy pay --run 批次名`（或 POST /api/v1/policy/runs），逐项政策判定并兑付，且只付一次。',
  },
  'policy.id': { en: 'Policy', zh: '政策编号' },
  'policy.name': { en: 'Title', zh: '名称' },
  'policy.department': { en: 'Issued by', zh: '发布部门' },
  'policy.enterprises': { en: 'Enterprises', zh: '企业数' },
  'policy.paid': { en: 'Paid', zh: '已兑付' },
  'policy.cut': { en: 'Held back by the budget', zh: '预算限额未付' },
  'lang.switch': { en: '中文', zh: 'English' },
  signout: { en: 'Sign out', zh: '退出' },
  'login.title': { en: 'Sign in to the cockpit', zh: '登录驾驶舱' },
  'login.token': { en: 'Bearer token', zh: '访问令牌' },
  'login.help': {
    en: 'Paste a token issued to you (the demo writes a reader token to citybrain-data/cockpit.token).',
    zh: '粘贴发给您的令牌（演示城市的只读令牌在 citybrain-data/cockpit.token）。',
  },
  'login.submit': { en: 'Sign in', zh: '登录' },
  'login.failed': { en: 'The token was not accepted', zh: '令牌无效' },
  'kpi.vehicles_today': { en: 'Vehicles in the city today', zh: '今日在城车辆' },
  'kpi.on_road': { en: 'On the road now', zh: '在途量' },
  'kpi.delay': { en: 'City delay index', zh: '城市延误指数' },
  'kpi.parking': { en: 'Parking index', zh: '停车指数' },
  'kpi.no_data': { en: 'no data yet', zh: '暂无数据' },
  'kpi.parking_none': { en: 'no parking data in the hub', zh: '数据中枢暂无停车数据' },
  'kpi.parking_free': { en: 'free berths', zh: '空余泊位' },
  'kpi.at': { en: 'stream time', zh: '数据时间' },
  'ranking.title': { en: 'Congestion ranking (last hour)', zh: '拥堵排行（近一小时）' },
  'ranking.link': { en: 'Link', zh: '路段' },
  'ranking.district': { en: 'District', zh: '区域' },
  'ranking.di': { en: 'Delay index', zh: '延误指数' },
  'ranking.n': { en: 'Traversals', zh: '通行次数' },
  'ranking.empty': {
    en: 'No link had 20 traversals in this hour; pick a busier time above.',
    zh: '该小时内没有通行次数达到 20 的路段；可在上方选择更繁忙的时刻。',
  },
  'map.legend': { en: 'Delay index', zh: '延误指数' },
  'map.nodata': { en: 'no data', zh: '无数据' },
  'map.checkpoints': { en: 'checkpoints', zh: '卡口' },
  'alerts.title': { en: 'Alerts open', zh: '当前告警' },
  'alerts.none_open': { en: 'No alert is open.', zh: '当前无告警。' },
  'alerts.none': { en: 'This hub keeps no alerts (alerts.events).', zh: '本数据中枢未保存告警（alerts.events）。' },
  'alerts.day': { en: 'Opened in the last 24 hours', zh: '近 24 小时新增告警' },
  'alerts.congestion': { en: 'Severe congestion', zh: '严重拥堵' },
  'alerts.lot_full': { en: 'Lot nearly full', zh: '车位将满' },
  'alerts.since': { en: 'since', zh: '始于' },
  'alerts.more': { en: 'more', zh: '条更多' },
  'time.live': { en: 'Live', zh: '实时' },
  'time.live_now': { en: 'Live · or look back to', zh: '实时 · 或回看' },
  'time.as_of': { en: 'As of', zh: '回看时刻' },
  'traffic.title': { en: 'Delay index over the day, by district', zh: '分区域全天延误指数' },
  'traffic.city': { en: 'City', zh: '全市' },
  'traffic.hint': {
    en: 'Click a link on the map or in the ranking to see its travel times.',
    zh: '点击地图或排行中的路段查看其行程时间。',
  },
  'link.title': { en: 'Link', zh: '路段' },
  'link.history': { en: 'Travel time per 15 minutes', zh: '每 15 分钟行程时间' },
  'link.median': { en: 'median', zh: '中位数' },
  'link.p25': { en: '25th percentile', zh: '25 分位' },
  'link.p75': { en: '75th percentile', zh: '75 分位' },
  'link.freeflow': { en: 'free flow', zh: '自由流' },
  'link.rank': { en: 'Rank by delay (last hour)', zh: '延误排名（近一小时）' },
  'link.unranked': { en: 'not ranked (fewer than 20 traversals)', zh: '未排名（通行次数不足 20）' },
  'link.close': { en: 'Close', zh: '关闭' },
  'link.seconds': { en: 's', zh: '秒' },
  'parking.title': { en: 'Parking near a place', zh: '周边停车' },
  'parking.none': {
    en: 'No parking datasets are in the hub yet: lots and berth sensors arrive with the parking scene (parking.*). This page lists lots near a chosen place with their predicted free berths once they do.',
    zh: '数据中枢尚无停车数据集：停车场与泊位传感器数据将随停车场景（parking.*）接入。接入后，本页列出所选地点周边停车场及预测空余泊位。',
  },
  'parking.lots': { en: 'Lots', zh: '停车场' },
  'parking.place': { en: 'Going to', zh: '目的地' },
  'parking.arrive': { en: 'Arriving in', zh: '到达时间' },
  'parking.minutes': { en: 'min', zh: '分钟' },
  'parking.now': { en: 'now', zh: '现在' },
  'parking.lot': { en: 'Lot', zh: '停车场' },
  'parking.kind': { en: 'Kind', zh: '类型' },
  'parking.walk': { en: 'Walk', zh: '步行' },
  'parking.free_now': { en: 'Free now', zh: '当前空位' },
  'parking.predicted': { en: 'Free on arrival', zh: '到达时预计空位' },
  'parking.chance': { en: 'Chance of a berth', zh: '有位概率' },
  'parking.price': { en: '2 hours', zh: '停 2 小时' },
  'parking.day': { en: 'How full the place’s pool was over the day', zh: '目的地停车池全天占用率' },
  'parking.hint': {
    en: 'Lots within 2.5 km, most likely to have a free berth when you arrive first (a forecast from each lot’s recent hours and its usual day), then the shorter walk, then the lower price.',
    zh: '2.5 公里内的停车场：按到达时有空位的概率排序（依据各停车场近几小时与平日规律的预测），其次步行距离，再次价格。',
  },
  'kind.on_street': { en: 'on-street', zh: '路内' },
  'kind.garage': { en: 'garage', zh: '停车库' },
  'kind.hospital_pool': { en: 'hospital pool', zh: '医院停车池' },
  'data.catalog': { en: 'Dataset catalog', zh: '数据目录' },
  'data.name': { en: 'Dataset', zh: '数据集' },
  'data.owner': { en: 'Owner', zh: '所属部门' },
  'data.sharing': { en: 'Sharing', zh: '共享类型' },
  'data.rows': { en: 'Records', zh: '记录数' },
  'data.size': { en: 'Size', zh: '大小' },
  'data.fresh': { en: 'Last ingest', zh: '最近写入' },
  'data.grants': { en: 'Grants', zh: '授权' },
  'data.grant.dataset': { en: 'Dataset', zh: '数据集' },
  'data.grant.grantee': { en: 'Department', zh: '申请部门' },
  'data.grant.state': { en: 'State', zh: '状态' },
  'data.grant.fields': { en: 'Raw fields', zh: '明文字段' },
  'data.grant.purpose': { en: 'Purpose', zh: '用途' },
  'data.grant.until': { en: 'Until', zh: '有效期至' },
  'data.grants.none': { en: 'No grants visible to you.', zh: '暂无可见授权。' },
  'data.calls': { en: 'Data calls per department', zh: '各部门数据调用次数' },
  'sharing.unconditional': { en: 'unconditional', zh: '无条件共享' },
  'sharing.conditional': { en: 'conditional', zh: '有条件共享' },
  'sharing.none': { en: 'not shared', zh: '不予共享' },
  error: { en: 'Something failed', zh: '出错了' },
};

let current: Lang = (localStorage.getItem(LANG_KEY) as Lang) === 'zh' ? 'zh' : 'en';

export function lang(): Lang {
  return current;
}

export function setLang(next: Lang): void {
  current = next;
  localStorage.setItem(LANG_KEY, next);
  document.documentElement.lang = next === 'zh' ? 'zh-CN' : 'en';
}

export function t(key: string): string {
  const entry = labels[key];
  return entry ? entry[current] : key;
}
