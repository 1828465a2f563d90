// Unary gRPC calls (squeezeserve.v1.Inference/* or inference.GRPCInferenceService/ModelInfer).
// -e TARGET=127.0.0.1:PORT PROTO_ROOT=proto PROTO_FILE=squeezeserve/v1/squeezeserve.proto
//    METHOD=package.Service/Method DATA_PATH=messages.json (a JSON array of request messages in
//    protobuf's JSON mapping), plus common.js's.
import grpc from 'k6/net/grpc';
import { SharedArray } from 'k6/data';
import { TIMEOUT, buildOptions, cycler, record, summary } from './common.js';

const client = new grpc.Client();
client.load([__ENV.PROTO_ROOT], __ENV.PROTO_FILE);
const messages = new SharedArray('messages', () => JSON.parse(open(__ENV.DATA_PATH)));
const CODES = [...Array(17).keys()]; // OK (0) .. UNAUTHENTICATED (16)
const nextMessage = cycler(messages);
const EXHAUSTED = Number(grpc.StatusResourceExhausted);
let connected = false;

export const options = buildOptions('grpc_req_duration', 0, CODES);
export { setup } from './common.js';

export default function (data) {
  if (!connected) {
    try {
      client.connect(__ENV.TARGET, { plaintext: true, timeout: TIMEOUT });
      connected = true;
    } catch (error) {
      record(Number(grpc.StatusUnavailable), false, undefined, data);
      return;
    }
  }
  const res = client.invoke(__ENV.METHOD, nextMessage(), { timeout: TIMEOUT });
  // res.status is a Go code object: String() gives its name ("NotFound"), Number() its number.
  const code = Number(res.status);
  const hint = res.trailers && res.trailers['retry-after'];
  record(code, code === EXHAUSTED, hint ? hint[0] : undefined, data);
}

export function handleSummary(data) {
  return summary(data);
}
