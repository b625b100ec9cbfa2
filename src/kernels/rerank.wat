;; Re-ranking an LSH index's candidates, WebAssembly 128-bit SIMD.
;;
;; The index keeps its stored rows (f32, `dim` per row, back to back) in this
;; module's memory. For a batch of queries (f32 rows at `queries`):
;;
;;   dots:        per query q, its candidate slots cands[starts[q] .. starts[q+1])
;;                (i32; starts has nQueries + 1 entries); writes one f64 per
;;                candidate at out[j]: Σ_i x_i·y_i with the exact arithmetic
;;                of the library's JavaScript `dot` (src/lsh/similarity.ts):
;;                products of the f32 values in f64 (exact), four f64 running
;;                sums s0..s3 over i ≡ 0, 1, 2, 3 (mod 4) kept as two f64x2,
;;                the tail (dim mod 4) added to s0, and the result
;;                ((s0 + s1) + s2) + s3. So scores are bit for bit those of
;;                the JavaScript path.
;;   pairDotsF32, pairSqdists: candidates as (slot, query, output) pairs in
;;                any order, see below.
;;
;; Pointers are byte offsets.
;; Regenerate the embedded bytes after editing: npm run build:wasm

(module
  (memory (export "memory") 1)

  (func (export "dots")
    (param $stored i32) (param $dim i32) (param $queries i32) (param $cands i32) (param $starts i32)
    (param $nQueries i32) (param $out i32)
    (local $q i32) (local $j i32) (local $end i32) (local $qp i32) (local $rp i32) (local $i i32) (local $vecEnd i32)
    (local $rowBytes i32) (local $x v128) (local $y v128) (local $lo v128) (local $hi v128) (local $s0 f64)
    (local.set $rowBytes (i32.shl (local.get $dim) (i32.const 2)))
    ;; floats handled four at a time: dim rounded down to a multiple of 4
    (local.set $vecEnd (i32.and (local.get $dim) (i32.const -4)))
    (block $queriesDone
      (loop $queryLoop
        (br_if $queriesDone (i32.ge_s (local.get $q) (local.get $nQueries)))
        (local.set $qp (i32.add (local.get $queries) (i32.mul (local.get $q) (local.get $rowBytes))))
        (local.set $j (i32.load (i32.add (local.get $starts) (i32.shl (local.get $q) (i32.const 2)))))
        (local.set $end (i32.load (i32.add (local.get $starts) (i32.shl (i32.add (local.get $q) (i32.const 1)) (i32.const 2)))))
        (block $candsDone
          (loop $candLoop
            (br_if $candsDone (i32.ge_s (local.get $j) (local.get $end)))
            (local.set $rp (i32.add (local.get $stored)
              (i32.mul (i32.load (i32.add (local.get $cands) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rowBytes))))
            (local.set $lo (f64x2.splat (f64.const 0)))
            (local.set $hi (f64x2.splat (f64.const 0)))
            (local.set $i (i32.const 0))
            (block $vecDone
              (loop $vecLoop
                (br_if $vecDone (i32.ge_s (local.get $i) (local.get $vecEnd)))
                (local.set $x (v128.load align=4 (i32.add (local.get $qp) (i32.shl (local.get $i) (i32.const 2)))))
                (local.set $y (v128.load align=4 (i32.add (local.get $rp) (i32.shl (local.get $i) (i32.const 2)))))
                (local.set $lo (f64x2.add (local.get $lo)
                  (f64x2.mul (f64x2.promote_low_f32x4 (local.get $x)) (f64x2.promote_low_f32x4 (local.get $y)))))
                (local.set $hi (f64x2.add (local.get $hi)
                  (f64x2.mul
                    (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))
                    (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $y) (local.get $y))))))
                (local.set $i (i32.add (local.get $i) (i32.const 4)))
                (br $vecLoop)))
            (local.set $s0 (f64x2.extract_lane 0 (local.get $lo)))
            (block $tailDone
              (loop $tailLoop
                (br_if $tailDone (i32.ge_s (local.get $i) (local.get $dim)))
                (local.set $s0 (f64.add (local.get $s0)
                  (f64.mul
                    (f64.promote_f32 (f32.load (i32.add (local.get $qp) (i32.shl (local.get $i) (i32.const 2)))))
                    (f64.promote_f32 (f32.load (i32.add (local.get $rp) (i32.shl (local.get $i) (i32.const 2))))))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $tailLoop)))
            (f64.store (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 3)))
              (f64.add
                (f64.add
                  (f64.add (local.get $s0) (f64x2.extract_lane 1 (local.get $lo)))
                  (f64x2.extract_lane 0 (local.get $hi)))
                (f64x2.extract_lane 1 (local.get $hi))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $candLoop)))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $queryLoop))))

  ;; The two functions below take the candidates as pairs, in any order
  ;; (the caller groups them by stored row, so each row is read from main
  ;; memory about once per batch instead of once per query that has it):
  ;; pair p scores query pairQuery[p] against stored row pairSlot[p] and
  ;; writes out[pairOut[p]]. pairSlot, pairQuery and pairOut are i32 arrays
  ;; of nPairs entries.
  ;;
  ;; pairDotsF32: the dot products in f32, out an f32 array: four f32x4
  ;; accumulators over blocks of 16 floats (a0 takes floats 0-3 of each
  ;; block, a1 4-7, a2 8-11, a3 12-15: independent chains, so the adds
  ;; overlap), then the leftover groups of 4 into a0, then
  ;; (a0 + a1) + (a2 + a3), its lanes (0+1)+(2+3), then the scalar tail.
  ;; Several times faster than `dots`; the caller bounds its error
  ;; (|error| ≤ γ·Σ|x_i·y_i|, γ = n·2^-24/(1 − n·2^-24), n ≤ dim + 8, which
  ;; holds for any order of the sums) and recomputes exactly with `dots`
  ;; every candidate that the bound cannot rule out of the top k.
  (func (export "pairDotsF32")
    (param $stored i32) (param $dim i32) (param $queries i32) (param $pairSlot i32) (param $pairQuery i32)
    (param $pairOut i32) (param $nPairs i32) (param $out i32)
    (local $p i32) (local $qp i32) (local $qp2 i32) (local $rp i32) (local $i i32) (local $y v128)
    (local $end16 i32) (local $end4 i32) (local $rowBytes i32) (local $two i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128) (local $s f32) (local $t f32)
    (local.set $rowBytes (i32.shl (local.get $dim) (i32.const 2)))
    ;; byte offsets where the blocks of 16 and the groups of 4 end
    (local.set $end16 (i32.shl (i32.and (local.get $dim) (i32.const -16)) (i32.const 2)))
    (local.set $end4 (i32.shl (i32.and (local.get $dim) (i32.const -4)) (i32.const 2)))
    (block $pairsDone
      (loop $pairLoop
        (br_if $pairsDone (i32.ge_s (local.get $p) (local.get $nPairs)))
        (local.set $qp (i32.add (local.get $queries)
          (i32.mul (i32.load (i32.add (local.get $pairQuery) (i32.shl (local.get $p) (i32.const 2)))) (local.get $rowBytes))))
        (local.set $rp (i32.add (local.get $stored)
          (i32.mul (i32.load (i32.add (local.get $pairSlot) (i32.shl (local.get $p) (i32.const 2)))) (local.get $rowBytes))))
        ;; Two pairs on the same stored row run together (each row value loaded once for both);
        ;; the second query's sums (b) follow the same order as the first's (a).
        (local.set $two (i32.and
          (i32.lt_s (i32.add (local.get $p) (i32.const 1)) (local.get $nPairs))
          (i32.eq
            (i32.load (i32.add (local.get $pairSlot) (i32.shl (local.get $p) (i32.const 2))))
            (i32.load offset=4 (i32.add (local.get $pairSlot) (i32.shl (local.get $p) (i32.const 2)))))))
        (local.set $qp2 (local.get $qp))
        (if (local.get $two)
          (then
            (local.set $qp2 (i32.add (local.get $queries)
              (i32.mul (i32.load offset=4 (i32.add (local.get $pairQuery) (i32.shl (local.get $p) (i32.const 2)))) (local.get $rowBytes))))))
        (local.set $a0 (f32x4.splat (f32.const 0)))
        (local.set $a1 (f32x4.splat (f32.const 0)))
        (local.set $a2 (f32x4.splat (f32.const 0)))
        (local.set $a3 (f32x4.splat (f32.const 0)))
        (local.set $b0 (f32x4.splat (f32.const 0)))
        (local.set $b1 (f32x4.splat (f32.const 0)))
        (local.set $b2 (f32x4.splat (f32.const 0)))
        (local.set $b3 (f32x4.splat (f32.const 0)))
        (local.set $i (i32.const 0))
        (block $blocksDone
          (loop $blockLoop
            (br_if $blocksDone (i32.ge_s (local.get $i) (local.get $end16)))
            (local.set $y (v128.load align=4 (i32.add (local.get $rp) (local.get $i))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load align=4 (i32.add (local.get $qp) (local.get $i))) (local.get $y))))
            (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (v128.load align=4 (i32.add (local.get $qp2) (local.get $i))) (local.get $y))))
            (local.set $y (v128.load offset=16 align=4 (i32.add (local.get $rp) (local.get $i))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 align=4 (i32.add (local.get $qp) (local.get $i))) (local.get $y))))
            (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (v128.load offset=16 align=4 (i32.add (local.get $qp2) (local.get $i))) (local.get $y))))
            (local.set $y (v128.load offset=32 align=4 (i32.add (local.get $rp) (local.get $i))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 align=4 (i32.add (local.get $qp) (local.get $i))) (local.get $y))))
            (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (v128.load offset=32 align=4 (i32.add (local.get $qp2) (local.get $i))) (local.get $y))))
            (local.set $y (v128.load offset=48 align=4 (i32.add (local.get $rp) (local.get $i))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 align=4 (i32.add (local.get $qp) (local.get $i))) (local.get $y))))
            (local.set $b3 (f32x4.add (local.get $b3) (f32x4.mul (v128.load offset=48 align=4 (i32.add (local.get $qp2) (local.get $i))) (local.get $y))))
            (local.set $i (i32.add (local.get $i) (i32.const 64)))
            (br $blockLoop)))
        (block $groupsDone
          (loop $groupLoop
            (br_if $groupsDone (i32.ge_s (local.get $i) (local.get $end4)))
            (local.set $y (v128.load align=4 (i32.add (local.get $rp) (local.get $i))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load align=4 (i32.add (local.get $qp) (local.get $i))) (local.get $y))))
            (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (v128.load align=4 (i32.add (local.get $qp2) (local.get $i))) (local.get $y))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $groupLoop)))
        (local.set $a0 (f32x4.add
          (f32x4.add (local.get $a0) (local.get $a1))
          (f32x4.add (local.get $a2) (local.get $a3))))
        (local.set $b0 (f32x4.add
          (f32x4.add (local.get $b0) (local.get $b1))
          (f32x4.add (local.get $b2) (local.get $b3))))
        (local.set $s (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
          (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (local.set $t (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $b0)) (f32x4.extract_lane 1 (local.get $b0)))
          (f32.add (f32x4.extract_lane 2 (local.get $b0)) (f32x4.extract_lane 3 (local.get $b0)))))
        (block $tailDone
          (loop $tailLoop
            (br_if $tailDone (i32.ge_s (local.get $i) (local.get $rowBytes)))
            (local.set $s (f32.add (local.get $s)
              (f32.mul
                (f32.load (i32.add (local.get $qp) (local.get $i)))
                (f32.load (i32.add (local.get $rp) (local.get $i))))))
            (local.set $t (f32.add (local.get $t)
              (f32.mul
                (f32.load (i32.add (local.get $qp2) (local.get $i)))
                (f32.load (i32.add (local.get $rp) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $tailLoop)))
        (f32.store
          (i32.add (local.get $out) (i32.shl (i32.load (i32.add (local.get $pairOut) (i32.shl (local.get $p) (i32.const 2)))) (i32.const 2)))
          (local.get $s))
        (if (local.get $two)
          (then
            (f32.store
              (i32.add (local.get $out) (i32.shl (i32.load offset=4 (i32.add (local.get $pairOut) (i32.shl (local.get $p) (i32.const 2)))) (i32.const 2)))
              (local.get $t))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $pairLoop))))

  ;; pairSqdists: Σ_i (x_i − y_i)² summed in order in f64, as rbfKernel's
  ;; JavaScript `pair` sums it (the exp is taken by the caller); out f64.
  (func (export "pairSqdists")
    (param $stored i32) (param $dim i32) (param $queries i32) (param $pairSlot i32) (param $pairQuery i32)
    (param $pairOut i32) (param $nPairs i32) (param $out i32)
    (local $p i32) (local $qp i32) (local $rp i32) (local $i i32)
    (local $rowBytes i32) (local $d f64) (local $sum f64)
    (local.set $rowBytes (i32.shl (local.get $dim) (i32.const 2)))
    (block $pairsDone
      (loop $pairLoop
        (br_if $pairsDone (i32.ge_s (local.get $p) (local.get $nPairs)))
        (local.set $qp (i32.add (local.get $queries)
          (i32.mul (i32.load (i32.add (local.get $pairQuery) (i32.shl (local.get $p) (i32.const 2)))) (local.get $rowBytes))))
        (local.set $rp (i32.add (local.get $stored)
          (i32.mul (i32.load (i32.add (local.get $pairSlot) (i32.shl (local.get $p) (i32.const 2)))) (local.get $rowBytes))))
        (local.set $sum (f64.const 0))
        (local.set $i (i32.const 0))
        (block $done
          (loop $each
            (br_if $done (i32.ge_s (local.get $i) (local.get $rowBytes)))
            (local.set $d (f64.sub
              (f64.promote_f32 (f32.load (i32.add (local.get $qp) (local.get $i))))
              (f64.promote_f32 (f32.load (i32.add (local.get $rp) (local.get $i))))))
            (local.set $sum (f64.add (local.get $sum) (f64.mul (local.get $d) (local.get $d))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $each)))
        (f64.store
          (i32.add (local.get $out) (i32.shl (i32.load (i32.add (local.get $pairOut) (i32.shl (local.get $p) (i32.const 2)))) (i32.const 3)))
          (local.get $sum))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $pairLoop))))
)
