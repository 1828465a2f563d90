// Shared by http.js and grpc.js: the scenario (closed or open loop) from -e variables, response
// accounting by status, Retry-After back-off, and the JSON summary that loadtest/k6.py parses.
//
// -e EXECUTOR=closed VUS=N | EXECUTOR=open RATE=R PRE_VUS=N MAX_VUS=M, DURATION_S, GRACEFUL_STOP_S,
//    TIMEOUT_S (per request), HONOUR_RETRY_AFTER=1 (sleep as told after a 429 / RESOURCE_EXHAUSTED),
//    SUMMARY_PATH (where handleSummary writes the JSON).
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

// One sample per response, tagged with its status (HTTP status, 0 = no response; gRPC code number).
const responses = new Counter('sqz_responses');
const missingRetryAfter = new Counter('sqz_missing_retry_after');
const retryAfter = new Trend('sqz_retry_after_s');

export const TIMEOUT = `${__ENV.TIMEOUT_S || 10}s`;
const DURATION_S = Number(__ENV.DURATION_S || 10);
const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(50)', 'p(95)', 'p(99)', 'count'];

function scenario() {
  const common = { duration: `${DURATION_S}s`, gracefulStop: `${__ENV.GRACEFUL_STOP_S || 12}s` };
  if (__ENV.EXECUTOR === 'open') {
    return {
      ...common,
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE),
      timeUnit: '1s',
      preAllocatedVUs: Number(__ENV.PRE_VUS),
      maxVUs: Number(__ENV.MAX_VUS),
    };
  }
  return { ...common, executor: 'constant-vus', vus: Number(__ENV.VUS) };
}

// Thresholds that always pass: they make k6 report these sub-metrics (per status) in the summary.
export function buildOptions(latencyMetric, okStatus, statuses) {
  const thresholds = { [`${latencyMetric}{status:${okStatus}}`]: ['max>=0'] };
  for (const status of statuses) {
    thresholds[`sqz_responses{status:${status}}`] = ['count>=0'];
  }
  return { scenarios: { load: scenario() }, thresholds, discardResponseBodies: true, summaryTrendStats: TREND_STATS };
}

// Each VU cycles through the shared items from its own random offset (like post_bodies.lua).
export function cycler(items) {
  let next = -1;
  return () => {
    next = next < 0 ? Math.floor(Math.random() * items.length) : (next + 1) % items.length;
    return items[next];
  };
}

export function setup() {
  return { endAt: Date.now() + DURATION_S * 1000 };
}

// Count one response; after an overload refusal check its hint and, if asked, back off that long
// (never past the end of the run, so sleeping VUs do not stretch it).
export function record(status, overloaded, retryAfterValue, data) {
  responses.add(1, { status: String(status) });
  if (!overloaded) return;
  const seconds = Number(retryAfterValue);
  if (retryAfterValue === undefined || retryAfterValue === null || retryAfterValue === '' || !(seconds >= 0)) {
    missingRetryAfter.add(1);
    return;
  }
  retryAfter.add(seconds);
  const left = (data.endAt - Date.now()) / 1000;
  if (__ENV.HONOUR_RETRY_AFTER === '1' && left > 0) sleep(Math.min(seconds, left));
}

export function summary(data) {
  return { [__ENV.SUMMARY_PATH]: JSON.stringify(data) };
}
