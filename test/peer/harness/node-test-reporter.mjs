// A node:test reporter that writes one JSON line per finished test, in the shape the peer
// harness reads from mocha's json reporter: { fullTitle, state, message, stack }.
// A title is the file name, then each enclosing test's name, then the test's own name.
import path from 'node:path';

export default async function* reporter(source) {
  const stacks = new Map(); // file -> names of the enclosing tests, by nesting level
  for await (const { type, data } of source) {
    if (type !== 'test:start' && type !== 'test:pass' && type !== 'test:fail') continue;
    const file = data.file ? path.basename(data.file) : '';
    const stack = stacks.get(file) ?? [];
    stacks.set(file, stack);
    if (type === 'test:start') {
      stack.length = data.nesting;
      stack[data.nesting] = data.name;
      continue;
    }
    // A file's own entry (its name) and tests with subtests are containers, not tests.
    if (data.details?.type === 'suite' || (data.name === data.file && data.nesting === 0)) continue;
    const names = [file, ...stack.slice(0, data.nesting), data.name].filter((n) => n !== '');
    const error = data.details?.error;
    const cause = error?.cause ?? error;
    const state = data.skip || data.todo ? 'pending' : type === 'test:pass' ? 'passed' : 'failed';
    yield `${JSON.stringify({
      fullTitle: names.join(' > '),
      state,
      message: cause ? String(cause.message ?? cause) : undefined,
      stack: cause?.stack,
    })}\n`;
  }
}
