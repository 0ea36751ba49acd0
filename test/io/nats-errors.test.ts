// Which NATS failures mean "the stream is missing" and which pass by themselves, on the errors the
// nats client builds from a server's answers (a JetStream API error carries its code in api_error;
// a status-only answer does not).

import t from 'tap';
import { NatsError, ErrorCode } from 'nats';
import { isStreamNotFound, isTransientNatsError, STREAM_NOT_FOUND } from '../../src/io/nats-errors.js';
import { TidemarkError } from '../../src/errors.js';

/** A JetStream API error as the client builds it from `{"error": {code, err_code, description}}`. */
const apiError = (errCode: number, description: string): NatsError => {
  const e = new NatsError(description, ErrorCode.JetStream404NoMessages);
  e.api_error = { code: 404, err_code: errCode, description };
  return e;
};

t.test('only API error 10059 means the stream is missing', async (t) => {
  t.ok(isStreamNotFound(apiError(STREAM_NOT_FOUND, 'stream not found')), '10059');
  t.notOk(isStreamNotFound(new NatsError('stream not found', ErrorCode.JetStream404NoMessages)), 'a bare "stream not found" status: not missing');
  t.notOk(isStreamNotFound(new NatsError('TIMEOUT', ErrorCode.Timeout)), 'a timeout: not missing');
  t.notOk(isStreamNotFound(apiError(10037, 'no message found')), 'another API error: not missing');
  t.notOk(isStreamNotFound(new Error('stream not found')), 'a plain error that says so: not missing');
});

t.test('a bare "stream not found" status is a failure a retry can cure; the API answer is not', async (t) => {
  const bare = new NatsError('stream not found', ErrorCode.JetStream404NoMessages);
  t.ok(isTransientNatsError(bare), 'bare status');
  t.ok(isTransientNatsError(new TidemarkError('NATS_UNAVAILABLE', 'jetstream:X: cannot look the stream up: stream not found', { cause: bare })), 'wrapped as the sink wraps it');
  t.notOk(isTransientNatsError(apiError(STREAM_NOT_FOUND, 'stream not found')), 'API error 10059: an answer');
  t.ok(isTransientNatsError(new NatsError('TIMEOUT', ErrorCode.Timeout)), 'a timeout');
});
