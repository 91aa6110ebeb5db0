// The native modules form layers (docs/internals.md, "Source layout"): the connection knows
// nothing above it, housekeeping and the server nothing above themselves, the handler sits on
// top of them and the addon on top of all. What a lower layer tells an upper one goes through
// an interface it declares itself (Loop, ServerOwner, Housekeeping::Host), never by including
// the upper header. Read from the `#include "..."` lines of native/; needs no server. Also: the
// SQLSTATEs the core tells apart are named once, in native/errors.h.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';

const NATIVE = path.join(__dirname, '..', 'native');

// Files with no header of their own that define part of another module's class.
const PARTS: Record<string, string> = {
  fanout: 'handler',
  records: 'handler',
  recovery: 'handler',
};

// A module is x.h and x.cc together; its edges are the headers they include.
function moduleGraph(dir: string): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  const moduleOf = (file: string) => {
    const base = file.replace(/\.(h|cc)$/, '');
    return PARTS[base] ?? base;
  };
  const files = fs.readdirSync(dir).filter((file) => /\.(h|cc)$/.test(file));
  for (const file of files) {
    const from = moduleOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const match of text.matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)) {
      const to = moduleOf(path.basename(match[1]!));
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

// One cycle of the graph as a path (first module repeated at the end), or null.
function findCycle(graph: Map<string, Set<string>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null;
    if (state.get(node) === 'open') return [...stack.slice(stack.indexOf(node)), node];
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle !== null) return cycle;
    }
    stack.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node);
    if (cycle !== null) return cycle;
  }
  return null;
}

function reachable(graph: Map<string, Set<string>>, from: string): Set<string> {
  const seen = new Set<string>();
  const todo = [...(graph.get(from) ?? [])];
  while (todo.length > 0) {
    const node = todo.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    todo.push(...(graph.get(node) ?? []));
  }
  return seen;
}

describe('06 native module layers', () => {
  const graph = moduleGraph(NATIVE);

  it('reads the modules of native/', () => {
    for (const name of ['addon', 'connection', 'server', 'housekeeping', 'handler', 'loop']) {
      expect(graph.has(name), name).to.equal(true);
    }
    expect(graph.get('handler')).to.include('server');
  });

  it('has no dependency cycle among the modules', () => {
    expect(findCycle(graph), 'a cycle of includes').to.equal(null);
  });

  // Each lower module and the modules above it that it must not reach, even indirectly.
  const above: Record<string, string[]> = {
    loop: ['connection', 'housekeeping', 'server', 'environment', 'handler', 'addon'],
    connection: ['housekeeping', 'server', 'environment', 'handler', 'addon'],
    housekeeping: ['server', 'environment', 'handler', 'addon'],
    server: ['environment', 'handler', 'addon'],
    environment: ['handler', 'addon'],
    handler: ['addon'],
  };
  for (const [lower, upper] of Object.entries(above)) {
    it(`${lower} reaches none of ${upper.join(', ')}`, () => {
      const reached = reachable(graph, lower);
      expect(upper.filter((name) => reached.has(name))).to.deep.equal([]);
    });
  }

  it('names every SQLSTATE it acts on in native/errors.h, and writes none elsewhere', () => {
    const literal = /"(?:[0-9][0-9A-Z]{4}|(?:HV|P0|XX|F0)[0-9A-Z]{3})"/g;
    const offenders: string[] = [];
    for (const file of fs.readdirSync(NATIVE).filter((f) => /\.(h|cc)$/.test(f))) {
      if (file.startsWith('errors.')) continue;
      const text = fs.readFileSync(path.join(NATIVE, file), 'utf8');
      for (const match of text.matchAll(literal)) offenders.push(`${file}: ${match[0]}`);
    }
    expect(offenders).to.deep.equal([]);
  });

  it('no lower module names an upper class in a forward declaration', () => {
    const offenders: string[] = [];
    for (const base of ['loop', 'connection', 'housekeeping', 'server', 'conninfo']) {
      for (const ext of ['.h', '.cc']) {
        const file = path.join(NATIVE, base + ext);
        if (!fs.existsSync(file)) continue;
        const text = fs.readFileSync(file, 'utf8');
        for (const match of text.matchAll(/^class (Addon|Handler|Environment);/gm)) {
          offenders.push(`${base}${ext}: ${match[0]}`);
        }
      }
    }
    expect(offenders).to.deep.equal([]);
  });
});
