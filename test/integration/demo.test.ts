// The README's first command: `tidemark demo` starts its own nats-server, generates posts and
// shows fired windows, late and dead-letter counts on screen.

import t from 'tap';
import { runCli } from '../helpers/nats.js';

t.test('demo runs on an embedded nats-server and shows fired windows', async (t) => {
  const r = await runCli(['demo', '--duration', '9s', '--rate', '400']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.slice(-300)})`);
  t.match(r.stdout, /embedded nats-server listening on nats:\/\/127\.0\.0\.1:\d+/);
  const frames = r.stdout.split('\x1b[2J\x1b[H');
  const last = frames[frames.length - 1]!;
  t.match(last, /key\s+window\s+count\s+pos\s+neg\s+neu\s+avg\s+rev\s+final/, 'a table of windows');
  const results = Number(/results: (\d+)/.exec(last)?.[1]);
  t.ok(results > 0, `windows fired (${results} results)`);
  t.match(last, /late posts dropped: \d+\s+dead letters: [1-9]\d*/, 'late and dead-letter counts, with the malformed posts counted');
  t.match(last, /#topic\d+|\*/, 'rows name their keys');
  t.match(r.stdout, /demo stopped/);
});

t.test('demo flags are checked', async (t) => {
  const r = await runCli(['demo', '--rate', 'fast']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--rate: "fast" is not accepted/);
});
