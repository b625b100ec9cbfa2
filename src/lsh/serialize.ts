/**
 * Rebuilding any saved hash family from its JSON.
 */
import { describeValue } from './encoding.js';
import type { HashFamily, HashFamilyJSON } from './family.js';
import type { Kernel, KernelFunction } from './similarity.js';
import { KernelizedLSH } from './klsh.js';
import { RotationHash } from './rotation_hash.js';
import { SimHash } from './simhash.js';

/** Options of {@link familyFromJSON}. */
export interface FamilyLoadOptions {
  /** Custom kernels by the name they were saved under. Default {} (built-in kernels only). */
  kernels?: Readonly<Record<string, Kernel | KernelFunction>>;
}

/**
 * A saved family (from `family.toJSON()`), rebuilt so it hashes exactly as
 * before: SimHash and the rotation hash redraw from their seed, KLSH reloads
 * its fitted arrays.
 */
export function familyFromJSON(json: HashFamilyJSON, options: FamilyLoadOptions = {}): HashFamily {
  const kind = json !== null && typeof json === 'object' ? (json as { kind?: unknown }).kind : undefined;
  switch (kind) {
    case 'simhash':
      return SimHash.fromJSON(json as HashFamilyJSON & { kind: 'simhash' });
    case 'rotation':
      return RotationHash.fromJSON(json as HashFamilyJSON & { kind: 'rotation' });
    case 'klsh':
      return KernelizedLSH.fromJSON(json as HashFamilyJSON & { kind: 'klsh' }, options);
    default:
      throw new Error(
        `familyFromJSON: kind must be 'simhash', 'rotation' or 'klsh', got ${describeValue(kind)}; ` +
          'pass what family.toJSON() returned',
      );
  }
}
