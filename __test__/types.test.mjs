// index.d.ts cannot drift (issue 10). It is written by hand (it documents every option), so it
// is held, with the TypeScript compiler's parser, to what it describes:
// - the JS layer: every export of index.js and every method of its classes is declared, and
//   every declaration exists;
// - the binding: crates/lockstep-node/native.d.ts is what napi-rs generates from the addon's
//   #[napi] items (scripts/build.mjs); it must match the built addon, and each object the
//   addon returns must have the same fields in index.d.ts;
// - the core: RuntimeEvent has one member per lockstep_core::Event variant, with its fields
//   (events cross as that enum's serde form), and ErrorCode lists every code the Rust sources
//   and the JS layer can throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const ts = require('typescript');
const lockstep = require('../index.js');
const { platformTriple } = require('../scripts/platform.cjs');

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path) => readFileSync(join(root, path), 'utf8');

/**
 * The declarations of a .d.ts: exported values, classes and interfaces (merged), type aliases;
 * names re-exported from another .d.ts of the package (`export { X } from './ring.js'`) with
 * their declarations there.
 */
function declarations(path) {
  const text = read(path);
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const syntax = sf.parseDiagnostics; // the parser's errors (syntax only: no types are resolved)
  assert.ok(Array.isArray(syntax));
  assert.deepEqual(syntax.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), [], `${path} does not parse`);
  const d = { values: new Map(), types: new Map(), members: new Map(), statics: new Map(), functions: new Map() };
  const addMembers = (name, node) => {
    const m = d.members.get(name) ?? new Map();
    const st = d.statics.get(name) ?? new Map();
    for (const member of node.members) {
      if (!member.name || ts.isConstructorDeclaration(member)) continue;
      const isStatic = member.modifiers?.some((mod) => mod.kind === ts.SyntaxKind.StaticKeyword);
      (isStatic ? st : m).set(member.name.getText(sf), member);
    }
    d.members.set(name, m);
    d.statics.set(name, st);
  };
  for (const s of sf.statements) {
    if (ts.isExportDeclaration(s) && s.moduleSpecifier && s.exportClause && ts.isNamedExports(s.exportClause)) {
      const from = declarations(join(path, '..', s.moduleSpecifier.text.replace(/\.js$/, '.d.ts')));
      for (const el of s.exportClause.elements) {
        const name = el.name.text;
        const found = ['values', 'types', 'members', 'statics', 'functions'].filter((k) => from[k].has(name));
        assert.ok(found.length > 0, `${path} re-exports ${name}, which ${s.moduleSpecifier.text} does not declare`);
        for (const k of found) d[k].set(name, from[k].get(name));
      }
      continue;
    }
    const exported = s.modifiers?.some((mod) => mod.kind === ts.SyntaxKind.ExportKeyword);
    if (!exported) continue;
    if (ts.isFunctionDeclaration(s)) {
      d.values.set(s.name.text, 'function');
      d.functions.set(s.name.text, s);
    } else if (ts.isClassDeclaration(s)) {
      d.values.set(s.name.text, 'class');
      addMembers(s.name.text, s);
    } else if (ts.isInterfaceDeclaration(s)) {
      addMembers(s.name.text, s);
    } else if (ts.isTypeAliasDeclaration(s)) {
      d.types.set(s.name.text, s.type);
    } else if (ts.isVariableStatement(s)) {
      for (const v of s.declarationList.declarations) d.values.set(v.name.text, 'const');
    }
  }
  d.sf = sf;
  return d;
}

const pub = declarations('index.d.ts');
const gen = declarations('crates/lockstep-node/native.d.ts');
const sorted = (xs) => [...new Set(xs)].sort();
const only = (a, b) => {
  const other = new Set(b);
  return sorted([...a].filter((x) => !other.has(x)));
};

/** Names every static method of a JS class (its own function-valued properties). */
function jsStatics(cls) {
  return sorted(Object.getOwnPropertyNames(cls).filter((name) => !['length', 'name', 'prototype'].includes(name) && typeof cls[name] === 'function'));
}

/** Names every method/getter of a JS class, up its prototype chain (not Object's or Error's). */
function jsMethods(cls) {
  const names = [];
  for (let p = cls.prototype; p && p !== Object.prototype && p !== Error.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) if (name !== 'constructor') names.push(name);
  }
  return sorted(names);
}

test('index.d.ts declares every export of index.js, and nothing index.js does not export', () => {
  const js = Object.keys(lockstep);
  const declared = [...pub.values.keys()];
  assert.deepEqual(only(js, declared), [], 'exported by index.js but missing from index.d.ts');
  assert.deepEqual(only(declared, js), [], 'declared in index.d.ts but not exported by index.js');
  for (const [name, kind] of pub.values) {
    const actual = typeof lockstep[name];
    assert.equal(actual, kind === 'const' ? actual : 'function', `${name} is declared as a ${kind} but is a ${actual}`);
  }
});

test('index.d.ts declares every method of index.js\'s classes, and each declared member exists', () => {
  const { Runtime, LockstepError, RingProducer, RingConsumer, createRingBuffer, openJournal } = lockstep;
  const instances = {
    Runtime: () => new Runtime({ workers: 1 }),
    JournalCursor: () => {
      const rt = new Runtime({ workers: 1, record: true });
      rt.tick();
      const log = rt.replayLog();
      rt.close();
      return openJournal(log);
    },
    LockstepError: () => new LockstepError('E_IO', 'x'),
    RingProducer: () => new RingProducer(createRingBuffer(4096)),
    RingConsumer: () => new RingConsumer(createRingBuffer(4096)),
  };
  const classes = [...pub.values].filter(([, kind]) => kind === 'class').map(([name]) => name);
  assert.deepEqual(sorted(classes), sorted(Object.keys(instances)), 'a class is missing from this test: add a way to make one');
  for (const name of classes) {
    const js = jsMethods(lockstep[name]);
    const members = pub.members.get(name);
    assert.deepEqual(only(js, members.keys()), [], `methods of ${name} missing from index.d.ts`);
    const statics = pub.statics.get(name) ?? new Map();
    assert.deepEqual(only(jsStatics(lockstep[name]), statics.keys()), [], `static methods of ${name} missing from index.d.ts`);
    assert.deepEqual(only(statics.keys(), jsStatics(lockstep[name])), [], `static methods declared on ${name} in index.d.ts but not there`);
    // Declared members: methods and getters on the prototype, or fields an instance has (a
    // member declared optional may be absent, e.g. LockstepError.spawnedIds).
    const instance = instances[name]();
    // `[Symbol.dispose]` and the like: well-known symbols.
    const key = (member) => (/^\[Symbol\.(\w+)\]$/.test(member) ? Symbol[member.slice(8, -1)] : member);
    // A `static` member is the class's own (Runtime.restore), the rest an instance's.
    const isStatic = (node) => node.modifiers?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword);
    const missing = [...members].filter(([member, node]) => !(key(member) in (isStatic(node) ? lockstep[name] : instance)) && !node.questionToken).map(([member]) => member);
    assert.deepEqual(missing, [], `declared on ${name} in index.d.ts but not there`);
    const symbols = Object.getOwnPropertySymbols(lockstep[name].prototype).filter((sym) => !Symbol.keyFor(sym)?.startsWith('lockstep.'));
    const symbolName = (sym) => `[Symbol.${Object.getOwnPropertyNames(Symbol).find((k) => Symbol[k] === sym) ?? sym.description}]`;
    assert.deepEqual(only(symbols.map(symbolName), members.keys()), [], `symbol methods of ${name} missing from index.d.ts`);
    instance.close?.();
  }
  // RingError is LockstepError (ring.js), declared as such.
  assert.equal(lockstep.RingError, LockstepError);
});

test('ring.d.ts declares every export of ring.js (what `lockstep/ring.js` gives TypeScript), and package.json ships and maps it', () => {
  const ring = require('../ring.js');
  const declared = declarations('ring.d.ts');
  assert.deepEqual(only(Object.keys(ring), declared.values.keys()), [], 'exported by ring.js but missing from ring.d.ts');
  assert.deepEqual(only(declared.values.keys(), Object.keys(ring)), [], 'declared in ring.d.ts but not exported by ring.js');
  for (const name of ['RingProducer', 'RingConsumer']) {
    assert.deepEqual(only(jsMethods(ring[name]), declared.members.get(name).keys()), [], `methods of ${name} missing from ring.d.ts`);
  }
  const pkg = JSON.parse(read('package.json'));
  assert.ok(pkg.files.includes('ring.d.ts'), 'package.json files ships ring.d.ts');
  assert.deepEqual(pkg.exports['./ring.js'], { types: './ring.d.ts', default: './ring.js' });
});

test('ExampleAgentName in index.d.ts lists exactly the agents exampleAgent() accepts (every dist/agents/*.wasm)', () => {
  const union = pub.types.get('ExampleAgentName');
  assert.ok(union && ts.isUnionTypeNode(union), 'ExampleAgentName is a union of string literals');
  const declared = sorted(union.types.map((t) => t.literal.text));
  const shipped = sorted(readdirSync(join(root, 'dist', 'agents')).filter((f) => f.endsWith('.wasm')).map((f) => f.slice(0, -5).replace(/_/g, '-')));
  for (const name of ['echo', 'flood', 'classifier']) assert.ok(declared.includes(name), `${name} is declared`);
  assert.deepEqual(declared, shipped);
  for (const name of declared) assert.ok(lockstep.exampleAgent(name).endsWith('.wasm'), name);
});

test('native.d.ts (generated by napi-rs) is the built addon\'s surface, and index.js calls only what it declares', () => {
  const native = require(join(root, `lockstep.${platformTriple()}.node`));
  const exported = Object.keys(native);
  assert.deepEqual(sorted(exported), sorted(gen.values.keys()), 'the addon and native.d.ts disagree: rebuild (node scripts/build.mjs)');
  for (const [name, kind] of gen.values) {
    if (kind !== 'class') continue;
    assert.deepEqual(jsMethods(native[name]), sorted(gen.members.get(name).keys()), `${name}'s methods and native.d.ts disagree: rebuild`);
    assert.deepEqual(jsStatics(native[name]), sorted((gen.statics.get(name) ?? new Map()).keys()), `${name}'s static methods and native.d.ts disagree: rebuild`);
  }
  const src = read('index.js');
  const called = sorted([...src.matchAll(/(?<![#\w])native\.(\w+)/g)].map((m) => m[1]));
  assert.deepEqual(only(called, gen.values.keys()), [], 'index.js calls addon functions native.d.ts does not declare');
  const methods = sorted([...src.matchAll(/#native\.(\w+)/g)].map((m) => m[1]));
  const declared = [...gen.members.get('NativeRuntime').keys(), ...gen.members.get('NativeJournalCursor').keys()];
  assert.deepEqual(only(methods, declared), [], 'index.js calls NativeRuntime or NativeJournalCursor methods native.d.ts does not declare');
});

/** The property names of a type node of `d` (a type literal, an interface, an array of either). */
function fields(d, node) {
  if (ts.isParenthesizedTypeNode(node)) return fields(d, node.type);
  if (ts.isArrayTypeNode(node)) return fields(d, node.elementType);
  if (ts.isTypeLiteralNode(node)) return sorted(node.members.map((m) => m.name.getText(d.sf)));
  if (ts.isTypeReferenceNode(node)) {
    const name = ts.isIdentifier(node.typeName) ? node.typeName.text : node.typeName.getText(d.sf);
    if (name === 'Array' || name === 'Promise') return fields(d, node.typeArguments[0]);
    assert.ok(d.members.has(name), `no interface ${name}`);
    return sorted(d.members.get(name).keys());
  }
  assert.fail(`cannot read the fields of ${node.getText(d.sf)}`);
}
const iface = (name) => ts.factory.createTypeReferenceNode(name);
const returnOf = (fn) => fn.type ?? assert.fail('no return type');
const memberType = (owner, member) => pub.members.get(owner).get(member).type;

test('each object the addon returns has the same fields in index.d.ts as napi-rs generates for it', () => {
  // [what, the type in index.d.ts, the #[napi(object)] it is, { fields only one side has, and why }]
  const shapes = [
    ['TickReport', iface('TickReport'), 'TickReport'],
    ['AgentInfo', iface('AgentInfo'), 'AgentInfo'],
    ['FaultInfo', iface('FaultInfo'), 'FaultInfo'],
    ['AgentMessage', iface('AgentMessage'), 'AgentMessage'],
    ['DeadLetter', iface('DeadLetter'), 'DeadLetter'],
    ['Divergence', iface('Divergence'), 'Divergence'],
    ['ReplayReport', iface('ReplayReport'), 'ReplayReport'],
    ['ModelInfo', iface('ModelInfo'), 'ModelInfo'],
    ['ModelInfo.inputs', memberType('ModelInfo', 'inputs'), 'TensorInfo'],
    ['ModelInfo.outputs', memberType('ModelInfo', 'outputs'), 'TensorInfo'],
    ['LogLine', iface('LogLine'), 'LogLine'],
    ['Runtime.deepHash()', returnOf(pub.members.get('Runtime').get('deepHash')), 'DeepHash'],
    ['keygen()', returnOf(pub.functions.get('keygen')), 'KeyPair'],
    ['verify()', returnOf(pub.functions.get('verify')), 'VerifyResult'],
    ['inspect()', returnOf(pub.functions.get('inspect')), 'ModuleReport'],
    ['replayAsync()', returnOf(pub.functions.get('replayAsync')), 'ReplayReport'],
    // index.js serialises `policy` into `policyJson`, and turns workers: 'auto' and maxWorkers into workers and workerScaling.
    ['RuntimeOptions', iface('RuntimeOptions'), 'RuntimeOptions', { public: ['policy', 'maxWorkers'], native: ['policyJson', 'workerScaling'] }],
    // index.js sets searchRoots (where it found onnxruntime-node).
    ['InferenceOptions', iface('InferenceOptions'), 'InferenceOptions', { native: ['searchRoots'] }],
    ['JournalOptions', iface('JournalOptions'), 'JournalOptions'],
    // index.js keeps onProgress (the binding gets it as its own argument).
    ['RecoverOptions', iface('RecoverOptions'), 'RecoverOptions', { public: ['onProgress'] }],
    ['RecoveryReport', iface('RecoveryReport'), 'RecoveryReport'],
    ['TornTail', iface('TornTail'), 'TornTail'],
    ['inspectLog()', returnOf(pub.functions.get('inspectLog')), 'LogSummary'],
    ['LogFile', iface('LogFile'), 'LogFile'],
    ['SessionInfo', iface('SessionInfo'), 'SessionInfo'],
    ['JournalVerifyReport', iface('JournalVerifyReport'), 'JournalVerifyReport'],
    ['SnapshotProblem', iface('SnapshotProblem'), 'SnapshotProblem'],
    ['LogSummary.snapshots', memberType('LogSummary', 'snapshots'), 'SnapshotFile'],
    // index.js passes interrupt to the binding as an argument of its own (checked as it crosses).
    ['CursorOptions', iface('CursorOptions'), 'CursorOptions', { public: ['interrupt'] }],
    ['SeekReport', iface('SeekReport'), 'SeekReport'],
    ['Lineage', iface('Lineage'), 'LineageInfo'],
    ['AgentTickMessages', iface('AgentTickMessages'), 'AgentTickMessages'],
  ];
  for (const [what, node, native, differ = {}] of shapes) {
    const p = fields(pub, node);
    const n = fields(gen, iface(native));
    assert.deepEqual(only(p, n), sorted(differ.public ?? []), `${what}: fields in index.d.ts the addon's ${native} does not have`);
    assert.deepEqual(only(n, p), sorted(differ.native ?? []), `${what}: fields of the addon's ${native} missing from index.d.ts`);
  }
});

/** lockstep_core::Event's variants: serde tag (snake_case, as `kind()` names it) → field names. */
function coreEvents() {
  const src = read('crates/lockstep-core/src/event.rs')
    .replace(/\/\/.*$/gm, '')
    .replace(/#\[[^\]]*\]/g, '');
  const start = src.indexOf('pub enum Event {');
  let depth = 0;
  let end = start;
  for (let i = src.indexOf('{', start); i < src.length; i++) {
    if (src[i] === '{') depth++;
    else if (src[i] === '}' && --depth === 0) {
      end = i;
      break;
    }
  }
  const body = src.slice(src.indexOf('{', start) + 1, end);
  const events = new Map();
  for (const [, name, fieldsText] of body.matchAll(/(\w+)\s*\{([^}]*)\}/g)) {
    const tag = name.replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase());
    events.set(tag, sorted(['type', ...[...fieldsText.matchAll(/(\w+)\s*:/g)].map((m) => m[1])]));
  }
  assert.ok(events.size >= 11, `read ${events.size} Event variants from event.rs`);
  return events;
}

test('RuntimeEvent in index.d.ts has one member per lockstep_core::Event variant, with its fields', () => {
  const union = pub.types.get('RuntimeEvent');
  assert.ok(union && ts.isUnionTypeNode(union), 'RuntimeEvent is a union');
  const declared = new Map();
  for (const member of union.types) {
    const names = fields(pub, member);
    const type = member.members.find((m) => m.name.getText(pub.sf) === 'type');
    declared.set(type.type.literal.text, names);
  }
  const core = coreEvents();
  assert.deepEqual(sorted(declared.keys()), sorted(core.keys()), 'event types');
  for (const [tag, names] of core) assert.deepEqual(declared.get(tag), names, `fields of the ${tag} event`);
});

/** Files under `dir` (recursively) whose names end with `ext`. */
function files(dir, ext) {
  return readdirSync(join(root, dir)).flatMap((f) => {
    const path = join(dir, f);
    return statSync(join(root, path)).isDirectory() ? files(path, ext) : path.endsWith(ext) ? [path] : [];
  });
}

test('ErrorCode in index.d.ts lists every code the Rust sources and the JS layer can throw, and no other', () => {
  const rust = [...files('crates/lockstep-core/src', '.rs'), ...files('crates/lockstep-node/src', '.rs')]
    .flatMap((f) => [...read(f).matchAll(/"(E_[A-Z][A-Z0-9_]*)"/g)].map((m) => m[1]));
  // The CLI's too (bin/): `npx lockstep` prints them (E_EXISTS, E_USAGE).
  const js = ['index.js', 'ring.js', 'validate.js', 'errors.js', ...files('bin', '.js')].flatMap((f) => [...read(f).matchAll(/'(E_[A-Z][A-Z0-9_]*)'/g)].map((m) => m[1]));
  // E_LOG_SINK is the code of a process warning (setLogger), not of an error.
  const thrown = sorted([...rust, ...js].filter((c) => c !== 'E_LOG_SINK'));
  assert.ok(thrown.length > 40, `found only ${thrown.length} codes`);
  const union = pub.types.get('ErrorCode');
  assert.ok(union && ts.isUnionTypeNode(union), 'ErrorCode is a union of string literals');
  const declared = sorted(union.types.map((t) => t.literal.text));
  assert.deepEqual(only(thrown, declared), [], 'codes thrown but missing from ErrorCode');
  assert.deepEqual(only(declared, thrown), [], 'codes in ErrorCode that nothing throws');
  assert.equal(pub.members.get('LockstepError').get('code').type.getText(pub.sf), 'ErrorCode');
});
