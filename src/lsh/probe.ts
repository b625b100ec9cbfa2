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
  const tables = new Int32Array(count);
  const keys = new Int32Array(count);
  const costs = new Float64Array(count);
  const found = probeInto(scores, offset, nTables, digitsPerKey, digitBase, count, tables, keys, costs);
  return Array.from({ length: found }, (_, i) => ({ table: tables[i], key: keys[i], cost: costs[i] }));
}

/** Scratch reused across calls (one query at a time; JavaScript is single-threaded). */
let scratch = {
  costs: new Float64Array(0),
  best: new Int32Array(0),
  homeKeys: new Int32Array(0),
  // Moves that can matter, grouped by table (start offsets), sorted by cost within a table.
  moveStart: new Int32Array(0),
  moveDigit: new Int32Array(0),
  moveDelta: new Int32Array(0),
  moveCost: new Float64Array(0),
  order: new Int32Array(0),
  // Move sets: a set is its last move plus a parent set (a persistent list), −1 for none.
  setTable: new Int32Array(0),
  setLast: new Int32Array(0),
  setParent: new Int32Array(0),
  setCost: new Float64Array(0),
  heap: new Int32Array(0),
  digitStamp: new Int32Array(0),
};
let stamp = 0;

function ensureScratch(cells: number, tables: number, digits: number, sets: number): void {
  const s = scratch;
  if (s.costs.length < cells) {
    s.costs = new Float64Array(cells);
    s.moveDigit = new Int32Array(cells);
    s.moveDelta = new Int32Array(cells);
    s.moveCost = new Float64Array(cells);
    s.order = new Int32Array(cells);
  }
  if (s.best.length < tables * digits) s.best = new Int32Array(tables * digits);
  if (s.homeKeys.length < tables) s.homeKeys = new Int32Array(tables);
  if (s.moveStart.length < tables + 1) s.moveStart = new Int32Array(tables + 1);
  if (s.digitStamp.length < digits) s.digitStamp = new Int32Array(digits);
  if (s.setTable.length < sets) {
    s.setTable = new Int32Array(sets);
    s.setLast = new Int32Array(sets);
    s.setParent = new Int32Array(sets);
    s.setCost = new Float64Array(sets);
    s.heap = new Int32Array(sets);
  }
  scratch = s;
}

/**
 * {@link probeSequence} into flat arrays, without per-probe objects: the
 * same probes in the same order (the same shift/expand enumeration and
 * heap discipline).
 * @returns how many probes were written (≤ count).
 */
export function probeInto(
  scores: ArrayLike<number>,
  offset: number,
  nTables: number,
  digitsPerKey: number,
  digitBase: number,
  count: number,
  outTables: Int32Array,
  outKeys: Int32Array,
  outCosts?: Float64Array,
): number {
  if (count <= 0) return 0;
  const width = digitsPerKey * digitBase;
  const cells = nTables * width;
  const maxPops = 64 * count + 64 * nTables;
  ensureScratch(cells, nTables, digitsPerKey, nTables + 2 * maxPops + 2);
  const { costs, best, homeKeys, moveStart, moveDigit, moveDelta, moveCost, order, setTable, setLast, setParent, setCost, heap, digitStamp } = scratch;
  // Every single move: table t, digit j to value a, at cost (max − score_a)².
  costs.fill(Infinity, 0, cells);
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
    homeKeys[table] = key;
  }
  // A set of moves costs at least its dearest move, and `count` single moves cost at most the
  // count-th cheapest one: moves dearer than that can never be among the `count` cheapest sets.
  const threshold = count >= cells ? Infinity : kthSmallest(costs.subarray(0, cells), count);
  let moves = 0;
  for (let table = 0; table < nTables; table++) {
    moveStart[table] = moves;
    const first = moves;
    for (let c = 0; c < width; c++) {
      const cost = costs[table * width + c];
      if (!(cost <= threshold) || cost === Infinity) continue;
      const digit = Math.floor(c / digitBase);
      const a = c % digitBase;
      moveDigit[moves] = digit;
      moveDelta[moves] = (a - best[table * digitsPerKey + digit]) * digitBase ** digit;
      moveCost[moves] = cost;
      order[moves] = moves;
      moves++;
    }
    // Stable insertion sort by cost (as Array.prototype.sort, stable, orders them).
    for (let i = first + 1; i < moves; i++) {
      const m = order[i];
      let j = i - 1;
      while (j >= first && moveCost[order[j]] > moveCost[m]) {
        order[j + 1] = order[j];
        j--;
      }
      order[j + 1] = m;
    }
  }
  moveStart[nTables] = moves;

  // The heap of move sets by cost; a set's moves are indices into its table's sorted list.
  let sets = 0;
  let heapSize = 0;
  const push = (set: number): void => {
    let i = heapSize++;
    heap[i] = set;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (setCost[heap[parent]] <= setCost[heap[i]]) break;
      const t = heap[parent];
      heap[parent] = heap[i];
      heap[i] = t;
      i = parent;
    }
  };
  const pop = (): number => {
    const top = heap[0];
    const last = heap[--heapSize];
    if (heapSize > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heapSize && setCost[heap[left]] < setCost[heap[smallest]]) smallest = left;
        if (right < heapSize && setCost[heap[right]] < setCost[heap[smallest]]) smallest = right;
        if (smallest === i) break;
        const t = heap[smallest];
        heap[smallest] = heap[i];
        heap[i] = t;
        i = smallest;
      }
    }
    return top;
  };
  const sortedMove = (table: number, index: number): number => order[moveStart[table] + index];
  for (let table = 0; table < nTables; table++) {
    if (moveStart[table + 1] > moveStart[table]) {
      setTable[sets] = table;
      setLast[sets] = 0;
      setParent[sets] = -1;
      setCost[sets] = moveCost[sortedMove(table, 0)];
      push(sets++);
    }
  }
  let found = 0;
  for (let pops = 0; found < count && heapSize > 0 && pops < maxPops; pops++) {
    const set = pop();
    const table = setTable[set];
    const listLength = moveStart[table + 1] - moveStart[table];
    stamp++;
    if (stamp === 2 ** 30) {
      digitStamp.fill(0);
      stamp = 1;
    }
    let key = homeKeys[table];
    let valid = true;
    for (let s = set; s >= 0; s = setParent[s]) {
      const m = sortedMove(table, setLast[s]);
      if (digitStamp[moveDigit[m]] === stamp) {
        valid = false;
        break;
      }
      digitStamp[moveDigit[m]] = stamp;
      key += moveDelta[m];
    }
    if (valid) {
      outTables[found] = table;
      outKeys[found] = key;
      if (outCosts !== undefined) outCosts[found] = setCost[set];
      found++;
    }
    const last = setLast[set];
    if (last + 1 < listLength) {
      const lastCost = moveCost[sortedMove(table, last)];
      const nextCost = moveCost[sortedMove(table, last + 1)];
      // shift: replace the last move by the next one; expand: add the next one.
      setTable[sets] = table;
      setLast[sets] = last + 1;
      setParent[sets] = setParent[set];
      setCost[sets] = setCost[set] - lastCost + nextCost;
      push(sets++);
      setTable[sets] = table;
      setLast[sets] = last + 1;
      setParent[sets] = set;
      setCost[sets] = setCost[set] + nextCost;
      push(sets++);
    }
  }
  return found;
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
