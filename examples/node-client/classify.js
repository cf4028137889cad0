#!/usr/bin/env node
// Classify texts with the opencc-cm-escalation classifier on Triton, from Node.js, using only
// Triton's public gRPC protocol (see proto/CLIENT_CONTRACT.md). Fails closed: any error prints
// {"escalate": true, ...} and exits 2.
//
//   node classify.js --url 127.0.0.1:8001 --descriptors triton-grpc.binpb [--profile default] TEXT...
//   echo '["text one", "text two"]' | node classify.js --url ... --descriptors ... -
//
// stdout: {"escalate": bool, "reason": str, "results": [opencc_cm.v1.Classification JSON, ...]}
// exit:   0 nothing flagged, 1 something flagged (escalate), 2 error (escalate: fail closed)
'use strict';

const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// --- the contract (names as in contract/opencc_cm_contract/names.py) -----------------------------
const TEXT_ENSEMBLE = 'classify_text';
const TEXT = 'text';
const THRESHOLD_PROFILE = 'threshold_profile';
// output name -> [datatype, bytes per element]; shapes [B, num_labels] or [B, 1]
const OUTPUTS = {
  scores: ['FP32', 4],
  label_flags: ['BOOL', 1],
  flagged: ['BOOL', 1],
  token_count: ['INT64', 8],
};

class ContractError extends Error {
  constructor(message, code = 'CONTRACT') {
    super(message);
    this.code = code;
  }
}

function parseArgs(argv) {
  const opts = { url: '127.0.0.1:8001', descriptors: null, profile: 'default', model: TEXT_ENSEMBLE,
    timeoutMs: 10000, retries: 3, texts: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new ContractError(`${arg} needs a value`, 'USAGE');
      i += 1;
      return argv[i];
    };
    if (arg === '--url') opts.url = value();
    else if (arg === '--descriptors') opts.descriptors = value();
    else if (arg === '--profile') opts.profile = value();
    else if (arg === '--model') opts.model = value();
    else if (arg === '--timeout-ms') opts.timeoutMs = Number(value());
    else if (arg === '--retries') opts.retries = Number(value());
    else if (arg === '-') opts.texts.push(...JSON.parse(fs.readFileSync(0, 'utf8')));
    else if (arg.startsWith('--')) throw new ContractError(`unknown option ${arg}`, 'USAGE');
    else opts.texts.push(arg);
  }
  if (!opts.descriptors) throw new ContractError('--descriptors FILE is required (see README.md)', 'USAGE');
  if (!(opts.timeoutMs > 0) || !(Number.isInteger(opts.retries) && opts.retries >= 0)) {
    throw new ContractError('--timeout-ms must be > 0 and --retries an integer >= 0', 'USAGE');
  }
  if (!opts.texts.length || !opts.texts.every((t) => typeof t === 'string')) {
    throw new ContractError('give at least one text (arguments, or "-" for a JSON array on stdin)', 'USAGE');
  }
  return opts;
}

// --- gRPC plumbing ------------------------------------------------------------------------------
function connect(opts) {
  const definition = protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(opts.descriptors), {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  // map<> fields: protobufjs keeps them maps when proto-loader reads .proto files (loadSync), but
  // reads a descriptor set's map entries as a repeated {key, value} message (same bytes on the
  // wire). Find out which, once, from the serializer; readMap accepts both forms.
  let mapsAsEntries = false;
  try {
    definition['inference.GRPCInferenceService'].ModelInfer.requestSerialize({ parameters: { k: { string_param: 'v' } } });
  } catch (err) {
    mapsAsEntries = true;
  }
  const { inference } = grpc.loadPackageDefinition(definition);
  const stub = new inference.GRPCInferenceService(opts.url, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  });
  const writeMap = (object) => (mapsAsEntries ? Object.entries(object).map(([key, value]) => ({ key, value })) : object);
  return { stub, writeMap };
}

function readMap(field) {
  return Array.isArray(field) ? Object.fromEntries(field.map((entry) => [entry.key, entry.value])) : (field || {});
}

function retryable(err) {
  // as client/opencc_cm_client/errors.py: UNAVAILABLE (except a full queue: shed on purpose),
  // NOT_FOUND "has no available versions" (model reloading), CANCELLED (server stopping).
  const details = err.details || '';
  if (err.code === grpc.status.UNAVAILABLE) return !details.includes('Exceeds maximum queue size');
  if (err.code === grpc.status.NOT_FOUND) return details.includes('has no available versions');
  return err.code === grpc.status.CANCELLED;
}

async function call(stub, method, request, opts) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await new Promise((resolve, reject) => {
        stub[method](request, { deadline: Date.now() + opts.timeoutMs }, (err, response) => (err ? reject(err) : resolve(response)));
      });
    } catch (err) {
      if (attempt >= opts.retries || !retryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }
}

// --- what the server publishes: labels and thresholds in the ensemble's config ----------------------
function serverInfo(config, profile) {
  const params = readMap(config.parameters);
  const string = (key) => {
    if (!params[key]) throw new ContractError(`model ${config.name} does not publish '${key}' in its config parameters`);
    return params[key].string_value;
  };
  const labels = JSON.parse(string('labels'));  // JSON inside a string_value
  const profiles = JSON.parse(string('threshold_profiles'));
  const thresholds = profiles[profile];
  if (!thresholds) {
    throw new ContractError(`unknown threshold profile '${profile}'; the server has ${Object.keys(profiles).join(', ')}`,
      'INVALID_ARGUMENT');
  }
  const maxBatch = Number(config.max_batch_size);
  if (!Array.isArray(labels) || !labels.length || thresholds.length !== labels.length || !(maxBatch >= 1)) {
    throw new ContractError(`model ${config.name}: malformed labels / thresholds / max_batch_size`);
  }
  return { labels, thresholds: thresholds.map(Number), maxBatch };
}

// --- one request: BYTES packing, outputs decoded by name ------------------------------------------
function packBytes(texts) {
  // BYTES tensor in raw_input_contents: each element = 4-byte little-endian length + the bytes
  return Buffer.concat(texts.flatMap((text) => {
    const bytes = Buffer.from(text, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    return [length, bytes];
  }));
}

function decodeOutputs(response, rows, numLabels) {
  const byName = {};
  response.outputs.forEach((out, i) => {  // raw_output_contents[i] belongs to outputs[i]
    byName[out.name] = { datatype: out.datatype, shape: out.shape.map(Number), raw: response.raw_output_contents[i] };
  });
  const decoded = {};
  for (const [name, [datatype, size]] of Object.entries(OUTPUTS)) {
    const out = byName[name];
    const width = name === 'scores' || name === 'label_flags' ? numLabels : 1;
    if (!out || out.datatype !== datatype || out.shape.join() !== [rows, width].join() || !out.raw
        || out.raw.length !== rows * width * size) {
      throw new ContractError(`output ${name}: expected ${datatype} [${rows}, ${width}], got ${out ? `${out.datatype} [${out.shape}]` : 'nothing'}`);
    }
    const values = [];
    for (let k = 0; k < rows * width; k += 1) {
      if (datatype === 'FP32') values.push(out.raw.readFloatLE(4 * k));
      else if (datatype === 'BOOL') values.push(out.raw[k] !== 0);
      else values.push(out.raw.readBigInt64LE(8 * k));
    }
    decoded[name] = Array.from({ length: rows }, (_, r) => values.slice(r * width, (r + 1) * width));
  }
  return decoded;
}

async function classifyChunk({ stub, writeMap }, texts, info, opts, version) {
  const request = {
    model_name: opts.model,
    inputs: [{ name: TEXT, datatype: 'BYTES', shape: [texts.length, 1] }],
    raw_input_contents: [packBytes(texts)],
    parameters: writeMap({ [THRESHOLD_PROFILE]: { string_param: opts.profile } }),
    // asked in the config's order; Triton 2.51 answers token_count, flagged, label_flags, scores:
    // outputs are matched by name below, never by position
    outputs: Object.keys(OUTPUTS).map((name) => ({ name })),
  };
  const out = decodeOutputs(await call(stub, 'ModelInfer', request, opts), texts.length, info.labels.length);
  return texts.map((_, r) => {
    const labels = info.labels.map((label, j) => {
      const score = out.scores[r][j];
      const fired = out.label_flags[r][j];
      if (!Number.isFinite(score) || fired !== (score >= info.thresholds[j])) {
        throw new ContractError(`row ${r}, ${label}: score ${score} and flag ${fired} disagree with threshold ${info.thresholds[j]}`);
      }
      return { label, score, threshold: info.thresholds[j], fired };
    });
    const flagged = out.flagged[r][0];
    if (flagged !== labels.some((l) => l.fired)) throw new ContractError(`row ${r}: flagged disagrees with its label flags`);
    // the opencc_cm.v1.Classification JSON mapping (int64 as a string)
    return { labels, flagged, inputTokens: out.token_count[r][0].toString(), modelName: opts.model,
      modelVersion: version, thresholdProfile: opts.profile };
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const connection = connect(opts);
  const { stub } = connection;
  try {
    const { config } = await call(stub, 'ModelConfig', { name: opts.model, version: '' }, opts);
    const meta = await call(stub, 'ModelMetadata', { name: opts.model, version: '' }, opts);
    const info = serverInfo(config, opts.profile);
    const version = meta.versions[meta.versions.length - 1] || '';
    const results = [];
    for (let start = 0; start < opts.texts.length; start += info.maxBatch) {  // one bad text fails its whole request
      results.push(...await classifyChunk(connection, opts.texts.slice(start, start + info.maxBatch), info, opts, version));
    }
    const fired = results.flatMap((c, i) => (c.flagged ? [`text[${i}]: ${c.labels.filter((l) => l.fired).map((l) => l.label).join(', ')}`] : []));
    const escalate = fired.length > 0;
    process.stdout.write(`${JSON.stringify({ escalate, reason: escalate ? fired.join('; ') : 'no label fired', results })}\n`);
    return escalate ? 1 : 0;
  } finally {
    stub.close();
  }
}

main().then((code) => { process.exitCode = code; }, (err) => {
  // fail closed: whatever went wrong, the answer is "escalate"
  const code = typeof err.code === 'number' ? (Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || String(err.code))
    : (err.code || err.name || 'ERROR');
  const message = err.details || err.message || String(err);
  process.stdout.write(`${JSON.stringify({ escalate: true, reason: `escalated because classification failed: ${code}: ${message}`,
    error: { code, message }, results: [] })}\n`);
  process.stderr.write(`escalate: classification failed: ${code}: ${message}\n`);
  process.exitCode = 2;
});
