/**
 * Multi-probe LSH (Lv, Josephson, Wang, Charikar, Li, VLDB 2007,
 * query-directed probing): besides a query's own bucket in each table, probe
 * the buckets reached by moving its least certain digits, cheapest first.
 *
 * A digit's alternatives cost (max − score_a)², a set of moves costs the sum,
 * and the sets are enumerated in increasing cost with the shift/expand heap
 * of the paper, across all tables at once.
 *
 * Legend: L tables, M digits per key, A values per digit.
 */

/**
 * Most probes per query: each costs a bucket lookup and heap work
 * (≈ 1.5–2 s per query at 2^16 on one core, measured); beyond it a query takes
 * minutes and gigabytes, which a larger key width or more tables do better.
 */
export const MAX_PROBES = 2 ** 16;

/** One extra bucket to look in. */
export interface Probe {
  /** The table, in [0, L). */
  table: number;
  /** The bucket key in that table. */
  key: number;
  /** Its cost: the sum of the squared score gaps of the digits moved. */
  cost: number;
}

interface Move {
  digit: number;
  delta: number;
  cost: number;
}

interface Candidate {
  cost: number;
  table: number;
  moves: number[];
}

/**
 * The `count` cheapest extra buckets for one query.
 * @param scores the query's digit scores, [L, M, A] row-major, starting at `offset`.
 * @returns up to `count` probes, cheapest first; none is a home bucket.
 */
export function probeSequence(
  scores: ArrayLike<number>,
  offset: number,
  nTables: number,
  digitsPerKey: number,
  digitBase: number,
  count: number,
): Probe[] {
  if (count > MAX_PROBES) {
    throw new Error(`probeSequence: count must be at most MAX_PROBES = ${MAX_PROBES}, got ${count}; probe fewer buckets`);
  }
  if (count <= 0) return [];
  // Every single move: table t, digit j to value a, at cost (max − score_a)².
  const width = digitsPerKey * digitBase;
  const costs = new Float64Array(nTables * width).fill(Infinity);
  const best = new Int32Array(nTables * digitsPerKey);
  const homeKeys: number[] = [];
  for (let table = 0; table < nTables; table++) {
    let key = 0;
    for (let digit = 0, weight = 1; digit < digitsPerKey; digit++, weight *= digitBase) {
      const base = offset + (table * digitsPerKey + digit) * digitBase;
      let top = 0;
      for (let a = 1; a < digitBase; a++) if (scores[base + a] > scores[base + top]) top = a;
      best[table * digitsPerKey + digit] = top;
      key += top * weight;
      for (let a = 0; a < digitBase; a++) {
        if (a !== top) costs[table * width + digit * digitBase + a] = (scores[base + top] - scores[base + a]) ** 2;
      }
    }
    homeKeys.push(key);
  }
  // A set of moves costs at least its dearest move, and `count` single moves cost at most the
  // count-th cheapest one: moves dearer than that can never be among the `count` cheapest sets.
  // (With count ≥ the number of moves, every move qualifies; kthSmallest would allocate count slots.)
  const threshold = count >= costs.length ? Infinity : kthSmallest(costs, count);
  const moves: Move[][] = [];
  for (let table = 0; table < nTables; table++) {
    const tableMoves: Move[] = [];
    for (let c = 0; c < width; c++) {
      const cost = costs[table * width + c];
      if (!(cost <= threshold) || cost === Infinity) continue;
      const digit = Math.floor(c / digitBase);
      const a = c % digitBase;
      tableMoves.push({ digit, delta: (a - best[table * digitsPerKey + digit]) * digitBase ** digit, cost });
    }
    moves.push(tableMoves.sort((x, y) => x.cost - y.cost));
  }

  const heap = new MinHeap();
  for (let table = 0; table < nTables; table++) {
    if (moves[table].length > 0) heap.push({ cost: moves[table][0].cost, table, moves: [0] });
  }
  const probes: Probe[] = [];
  const maxPops = 64 * count + 64 * nTables;
  for (let pops = 0; probes.length < count && heap.size > 0 && pops < maxPops; pops++) {
    const set = heap.pop();
    const list = moves[set.table];
    const digits = new Set<number>();
    let key = homeKeys[set.table];
    let valid = true;
    for (const m of set.moves) {
      if (digits.has(list[m].digit)) {
        valid = false;
        break;
      }
      digits.add(list[m].digit);
      key += list[m].delta;
    }
    if (valid) probes.push({ table: set.table, key, cost: set.cost });
    const last = set.moves[set.moves.length - 1];
    if (last + 1 < list.length) {
      // shift: replace the last move by the next one; expand: add the next one.
      heap.push({
        cost: set.cost - list[last].cost + list[last + 1].cost,
        table: set.table,
        moves: [...set.moves.slice(0, -1), last + 1],
      });
      heap.push({ cost: set.cost + list[last + 1].cost, table: set.table, moves: [...set.moves, last + 1] });
    }
  }
  return probes;
}

/**
 * The k-th smallest finite value (Infinity when there are fewer), with a
 * bounded max-heap: O(n log k), much cheaper than sorting all n.
 */
function kthSmallest(values: Float64Array, k: number): number {
  const heap = new Float64Array(k);
  let size = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === Infinity) continue;
    if (size < k) {
      // sift up
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (heap[parent] >= v) break;
        heap[at] = heap[parent];
        at = parent;
      }
      heap[at] = v;
    } else if (v < heap[0]) {
      // replace the largest, sift down
      let at = 0;
      for (;;) {
        const left = 2 * at + 1;
        if (left >= k) break;
        const child = left + 1 < k && heap[left + 1] > heap[left] ? left + 1 : left;
        if (heap[child] <= v) break;
        heap[at] = heap[child];
        at = child;
      }
      heap[at] = v;
    }
  }
  return size < k ? Infinity : heap[0];
}

/** A binary min-heap on cost. */
class MinHeap {
  private items: Candidate[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: Candidate): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent].cost <= items[i].cost) break;
      [items[parent], items[i]] = [items[i], items[parent]];
      i = parent;
    }
  }

  pop(): Candidate {
    const items = this.items;
    const top = items[0];
    const last = items.pop() as Candidate;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && items[left].cost < items[smallest].cost) smallest = left;
        if (right < items.length && items[right].cost < items[smallest].cost) smallest = right;
        if (smallest === i) break;
        [items[smallest], items[i]] = [items[i], items[smallest]];
        i = smallest;
      }
    }
    return top;
  }
}
