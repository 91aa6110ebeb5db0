// The code blocks of the documentation (README.md, docs/*.md), for the snippet check of
// test/48.docs.snippets.test.ts, and the links between those pages.
//
// A fenced block whose language is JavaScript or TypeScript is a snippet that must run as
// written. Anything else (sh, text, json, sql, ...) is not run. A JS/TS block that must not
// run says why in an HTML comment on the line just before its fence:
//
//   <!-- not-run: needs two servers -->
//   ```js
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Fence languages that are run: JavaScript as ES module or CommonJS, TypeScript via tsx. */
const RUNNABLE = new Set(['js', 'javascript', 'mjs', 'cjs', 'ts', 'typescript', 'mts', 'cts']);

export interface Snippet {
  /** The Markdown file, relative to the repository root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The fence's language, lowercased ('' when none). */
  lang: string;
  code: string;
  /** The reason given in `<!-- not-run: reason -->`, when there is one. */
  notRun?: string;
}

/** Every fenced block of one Markdown text, in order. */
export function fencedBlocks(text: string, file: string): Snippet[] {
  const lines = text.split('\n');
  const blocks: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i]!);
    if (!open) continue;
    const [, indent = '', fence = '', lang = ''] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = new RegExp(`^\\s*${fence[0]}{${fence.length},}\\s*$`);
      if (close.test(lines[j]!)) break;
      // Blocks inside list items are indented as a whole; the code is what is under the fence.
      const l = lines[j]!;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    const before = (lines[i - 1] ?? '').trim();
    const marker = /^<!--\s*not-run:\s*(.*?)\s*-->$/.exec(before);
    blocks.push({
      file,
      line: i + 1,
      lang: lang.toLowerCase(),
      code: body.join('\n') + '\n',
      ...(marker ? { notRun: marker[1] || '(no reason)' } : {}),
    });
    i = j;
  }
  return blocks;
}

/** True for a block in a language the check runs. */
export function isRunnable(snippet: Snippet): boolean {
  return RUNNABLE.has(snippet.lang);
}

/** True for TypeScript blocks (run with tsx). */
export function isTypeScript(snippet: Snippet): boolean {
  return ['ts', 'typescript', 'mts', 'cts'].includes(snippet.lang);
}

/**
 * The file extension to run a snippet under: ES module when it uses `import`/`export` (and so
 * may use top-level await), CommonJS otherwise.
 */
export function extensionFor(snippet: Snippet): string {
  const esm = /^\s*(import|export)\s/m.test(snippet.code);
  if (isTypeScript(snippet)) return esm ? '.mts' : '.cts';
  return esm ? '.mjs' : '.cjs';
}

/** True when the snippet starts an HTTP server (and so is driven over HTTP, then stopped). */
export function isServer(snippet: Snippet): boolean {
  return /\.listen\(/.test(snippet.code);
}

/** The documentation pages: README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md. */
export function docPages(root: string): string[] {
  const pages = ['README.md', 'CONTRIBUTING.md', 'CHANGELOG.md'].filter((p) =>
    fs.existsSync(path.join(root, p)),
  );
  const docs = path.join(root, 'docs');
  if (fs.existsSync(docs)) {
    for (const f of fs.readdirSync(docs).sort()) if (f.endsWith('.md')) pages.push(`docs/${f}`);
  }
  return pages;
}

/** GitHub's anchor for a heading: lowercased, punctuation dropped, spaces as '-'. */
export function slug(heading: string): string {
  // HTML tags vanish from the rendered heading, except inside code spans (`Promise<void>`).
  const text = heading
    .split('`')
    .map((part, i) => (i % 2 ? part : part.replace(/<[^>]*>/g, '')))
    .join('')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown text's headings (outside code blocks), with GitHub's -1, -2. */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const f = /^\s*(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1]![0]!;
      else if (f[1]![0] === fence) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = slug(h[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative links `[text](target)` of a Markdown text, outside code blocks and code spans. */
export function relativeLinks(text: string): { target: string; line: number }[] {
  const links: { target: string; line: number }[] = [];
  let fence: string | null = null;
  text.split('\n').forEach((line, i) => {
    const f = /^\s*(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1]![0]!;
      else if (f[1]![0] === fence) fence = null;
      return;
    }
    if (fence !== null) return;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
      links.push({ target, line: i + 1 });
    }
  });
  return links;
}
