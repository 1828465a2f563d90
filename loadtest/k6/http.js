// POST JSON bodies (REST /v1 or KServe v2 /v2/models/{name}/infer) to one URL.
// -e URL=http://127.0.0.1:PORT/... DATA_PATH=bodies.json (a JSON array of body strings), plus common.js's.
import http from 'k6/http';
import { SharedArray } from 'k6/data';
import { TIMEOUT, buildOptions, cycler, record, summary } from './common.js';

const bodies = new SharedArray('bodies', () => JSON.parse(open(__ENV.DATA_PATH)));
// 0 = no response (connection error or client timeout).
const STATUSES = [0, 200, 400, 404, 408, 413, 422, 429, 499, 500, 502, 503, 504];
const PARAMS = { headers: { 'Content-Type': 'application/json' }, timeout: TIMEOUT };
const nextBody = cycler(bodies);

export const options = buildOptions('http_req_duration', 200, STATUSES);
export { setup } from './common.js';

export default function (data) {
  const res = http.post(__ENV.URL, nextBody(), PARAMS);
  record(res.status, res.status === 429, res.headers['Retry-After'], data);
}

export function handleSummary(data) {
  return summary(data);
}
