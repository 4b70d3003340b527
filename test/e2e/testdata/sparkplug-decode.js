// Decodes Sparkplug B payloads with the sparkplug-payload npm package (an
// implementation independent of the agent's). Input: one message a line,
// "<topic>\t<payload in base64>". Output: one JSON object a line,
// {"topic": ..., "payload": ...}, with 64-bit integers (Long) written as
// decimal strings so that no digit is lost.
'use strict';
const readline = require('readline');
const Long = require('long');
const sparkplug = require('sparkplug-payload').get('spBv1.0');

function plain(v) {
  if (Long.isLong(v)) {
    return v.toString();
  }
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    return Buffer.from(v).toString('base64');
  }
  if (Array.isArray(v)) {
    return v.map(plain);
  }
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = plain(x);
    }
    return out;
  }
  return v;
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  const tab = line.indexOf('\t');
  const topic = line.slice(0, tab);
  const payload = sparkplug.decodePayload(Buffer.from(line.slice(tab + 1), 'base64'));
  process.stdout.write(JSON.stringify({ topic, payload: plain(payload) }) + '\n');
});
