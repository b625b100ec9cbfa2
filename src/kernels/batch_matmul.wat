;; Batched small-matrix multiply, f32, WebAssembly 128-bit SIMD.
;;
;;   C[b] = op(A[b]) · op(B[b])   for b in [0, count)
;;
;; where op(X) is X or Xᵀ (transposeA, transposeB), exactly as tf.matMul on
;; rank-3 tensors with equal batch sizes. Shapes of the logical operands:
;; op(A) is [m, k], op(B) is [k, n], C is [m, n]; every matrix is row-major and
;; the matrices of a batch follow each other without gaps.
;;
;; Per batch element:
;;   1. packA: op(A) → row blocks of 4 rows, stored k-major: pa[blk][kk][0..3]
;;      (m rounded up to 4, k rounded up to 4, padding is zero). transposeA
;;      only changes how it is read.
;;   2. packB: op(B) → column panels of 8 columns, stored k-major:
;;      pb[panel][kk][0..7] (n rounded up to 8, k up to 4, padding zero).
;;   3. gemm: for each panel, for each row block, a 4×8 tile of C lives in
;;      eight v128 locals; each step of the k loop loads two v128 of B,
;;      broadcasts the four A values (load32_splat) and adds the products.
;;      Full tiles are stored with v128.store; tiles crossing the edge of C go
;;      through a 32-float scratch tile and are copied element by element.
;; k is padded to a multiple of 4 so that packing can move 4×4 blocks; zero
;; padding of m and n only costs work on the edge tiles (none when m % 4 = 0
;; and n % 8 = 0). Shapes that are not multiples (m % 4, k % 4, n % 8) are
;; packed element by element; everything else moves v128 at a time.
;;
;; Why 4×8: V8 on x64 gives wasm 15 usable xmm registers; 8 accumulators + 2 B
;; vectors + 4 broadcasts + 1 product fit, so nothing spills. Each k step is 8
;; multiplies and 8 adds (no FMA in wasm SIMD) for 64 flops.
;; Why the k loop is not unrolled by hand: TurboFan (Node 20) then hoists every
;; load of the unrolled body to its top and turns each `offset=` into a
;; loop-invariant base register, so xmm and general registers spill to the
;; stack: ×4 unrolled ran at 24 GFLOP/s, ×2 at 30, not unrolled at 48 (CPU
;; time, [64,64]·[64,128], data in cache). TurboFan peels/unrolls it itself.
;;
;; Memory is the module's own (exported as "memory"); the caller lays out the
;; inputs, outputs and packing buffers and grows it when needed. All pointers
;; are byte offsets; 16-byte alignment is assumed by nothing but helps speed.
;;
;; Regenerate the embedded bytes after editing: npm run build:wasm

(module
  (memory (export "memory") 1)

  ;; ---------------------------------------------------------------- packA
  ;; dst[(i >> 2) * k4 * 4 + kk * 4 + (i & 3)] = op(A)[i][kk], zero outside.
  (func $packA (param $src i32) (param $dst i32) (param $m i32) (param $k i32) (param $trans i32)
    (local $k4 i32) (local $m4 i32) (local $i i32) (local $kk i32)
    (local $s i32) (local $d i32) (local $rowBytes i32) (local $sI i32) (local $sK i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $k4 (i32.and (i32.add (local.get $k) (i32.const 3)) (i32.const -4)))
    (local.set $m4 (i32.and (i32.add (local.get $m) (i32.const 3)) (i32.const -4)))

    (if (i32.eqz (i32.and (i32.or (local.get $m) (local.get $k)) (i32.const 3)))
      (then
        (if (i32.eqz (local.get $trans))
          (then
            ;; A is [m][k]: 4×4 blocks, transposed in registers.
            (local.set $rowBytes (i32.shl (local.get $k) (i32.const 2)))
            (local.set $i (i32.const 0))
            (local.set $d (local.get $dst))
            (loop $rows
              (local.set $s (i32.add (local.get $src)
                (i32.mul (local.get $i) (local.get $rowBytes))))
              (local.set $kk (i32.const 0))
              (loop $cols
                (local.set $x0 (v128.load (local.get $s)))
                (local.set $x1 (v128.load (i32.add (local.get $s) (local.get $rowBytes))))
                (local.set $x2 (v128.load (i32.add (local.get $s)
                  (i32.shl (local.get $rowBytes) (i32.const 1)))))
                (local.set $x3 (v128.load (i32.add (local.get $s)
                  (i32.mul (local.get $rowBytes) (i32.const 3)))))
                ;; [a0 b0 a1 b1] [a2 b2 a3 b3] [c0 d0 c1 d1] [c2 d2 c3 d3]
                (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
                  (local.get $x0) (local.get $x1)))
                (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
                  (local.get $x0) (local.get $x1)))
                (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
                  (local.get $x2) (local.get $x3)))
                (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
                  (local.get $x2) (local.get $x3)))
                ;; [a0 b0 c0 d0] … [a3 b3 c3 d3]
                (v128.store (local.get $d)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
                (v128.store offset=16 (local.get $d)
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
                (v128.store offset=32 (local.get $d)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
                (v128.store offset=48 (local.get $d)
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
                (local.set $s (i32.add (local.get $s) (i32.const 16)))
                (local.set $d (i32.add (local.get $d) (i32.const 64)))
                (local.set $kk (i32.add (local.get $kk) (i32.const 4)))
                (br_if $cols (i32.lt_u (local.get $kk) (local.get $k))))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br_if $rows (i32.lt_u (local.get $i) (local.get $m)))))
          (else
            ;; A is stored [k][m]: four consecutive rows of op(A) are one v128.
            (local.set $kk (i32.const 0))
            (local.set $s (local.get $src))
            (loop $ks
              (local.set $i (i32.const 0))
              (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $kk) (i32.const 4))))
              (loop $blocks
                (v128.store (local.get $d) (v128.load (local.get $s)))
                (local.set $s (i32.add (local.get $s) (i32.const 16)))
                (local.set $d (i32.add (local.get $d) (i32.shl (local.get $k) (i32.const 4))))
                (local.set $i (i32.add (local.get $i) (i32.const 4)))
                (br_if $blocks (i32.lt_u (local.get $i) (local.get $m))))
              (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
              (br_if $ks (i32.lt_u (local.get $kk) (local.get $k))))))
        (return)))

    ;; Any shape: one element at a time, zero in the padding.
    (if (local.get $trans)
      (then (local.set $sI (i32.const 1)) (local.set $sK (local.get $m)))
      (else (local.set $sI (local.get $k)) (local.set $sK (i32.const 1))))
    (local.set $i (i32.const 0))
    (loop $rows
      (local.set $kk (i32.const 0))
      (local.set $d (i32.add (local.get $dst) (i32.shl
        (i32.add (i32.mul (i32.shr_u (local.get $i) (i32.const 2)) (i32.shl (local.get $k4) (i32.const 2)))
                 (i32.and (local.get $i) (i32.const 3)))
        (i32.const 2))))
      (loop $cols
        (f32.store (local.get $d)
          (if (result f32) (i32.and (i32.lt_u (local.get $i) (local.get $m)) (i32.lt_u (local.get $kk) (local.get $k)))
            (then (f32.load (i32.add (local.get $src) (i32.shl
              (i32.add (i32.mul (local.get $i) (local.get $sI)) (i32.mul (local.get $kk) (local.get $sK)))
              (i32.const 2)))))
            (else (f32.const 0))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $kk) (local.get $k4))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $i) (local.get $m4)))))

  ;; ---------------------------------------------------------------- packB
  ;; dst[(j >> 3) * k4 * 8 + kk * 8 + (j & 7)] = op(B)[kk][j], zero outside.
  (func $packB (param $src i32) (param $dst i32) (param $k i32) (param $n i32) (param $trans i32)
    (local $k4 i32) (local $n8 i32) (local $j i32) (local $kk i32)
    (local $s i32) (local $d i32) (local $rowBytes i32) (local $panelBytes i32) (local $sK i32) (local $sJ i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $k4 (i32.and (i32.add (local.get $k) (i32.const 3)) (i32.const -4)))
    (local.set $n8 (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)))
    (local.set $panelBytes (i32.shl (local.get $k4) (i32.const 5)))

    (if (i32.eqz (i32.or (i32.and (local.get $n) (i32.const 7)) (i32.and (local.get $k) (i32.const 3))))
      (then
        (if (i32.eqz (local.get $trans))
          (then
            ;; B is [k][n]: each row of a panel is two contiguous v128.
            (local.set $kk (i32.const 0))
            (local.set $s (local.get $src))
            (loop $ks
              (local.set $j (i32.const 0))
              (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $kk) (i32.const 5))))
              (loop $panels
                (v128.store (local.get $d) (v128.load (local.get $s)))
                (v128.store offset=16 (local.get $d) (v128.load offset=16 (local.get $s)))
                (local.set $s (i32.add (local.get $s) (i32.const 32)))
                (local.set $d (i32.add (local.get $d) (local.get $panelBytes)))
                (local.set $j (i32.add (local.get $j) (i32.const 8)))
                (br_if $panels (i32.lt_u (local.get $j) (local.get $n))))
              (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
              (br_if $ks (i32.lt_u (local.get $kk) (local.get $k)))))
          (else
            ;; B is stored [n][k]: 4×4 blocks, transposed in registers.
            (local.set $rowBytes (i32.shl (local.get $k) (i32.const 2)))
            (local.set $j (i32.const 0))
            (loop $quads
              (local.set $s (i32.add (local.get $src) (i32.mul (local.get $j) (local.get $rowBytes))))
              ;; panel j >> 3, left or right half of it
              (local.set $d (i32.add (local.get $dst) (i32.add
                (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (local.get $panelBytes))
                (i32.shl (i32.and (local.get $j) (i32.const 4)) (i32.const 2)))))
              (local.set $kk (i32.const 0))
              (loop $ks
                (local.set $x0 (v128.load (local.get $s)))
                (local.set $x1 (v128.load (i32.add (local.get $s) (local.get $rowBytes))))
                (local.set $x2 (v128.load (i32.add (local.get $s)
                  (i32.shl (local.get $rowBytes) (i32.const 1)))))
                (local.set $x3 (v128.load (i32.add (local.get $s)
                  (i32.mul (local.get $rowBytes) (i32.const 3)))))
                (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
                  (local.get $x0) (local.get $x1)))
                (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
                  (local.get $x0) (local.get $x1)))
                (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
                  (local.get $x2) (local.get $x3)))
                (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
                  (local.get $x2) (local.get $x3)))
                (v128.store (local.get $d)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
                (v128.store offset=32 (local.get $d)
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
                (v128.store offset=64 (local.get $d)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
                (v128.store offset=96 (local.get $d)
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
                (local.set $s (i32.add (local.get $s) (i32.const 16)))
                (local.set $d (i32.add (local.get $d) (i32.const 128)))
                (local.set $kk (i32.add (local.get $kk) (i32.const 4)))
                (br_if $ks (i32.lt_u (local.get $kk) (local.get $k))))
              (local.set $j (i32.add (local.get $j) (i32.const 4)))
              (br_if $quads (i32.lt_u (local.get $j) (local.get $n))))))
        (return)))

    ;; Any shape: one element at a time, zero in the padding.
    (if (local.get $trans)
      (then (local.set $sK (i32.const 1)) (local.set $sJ (local.get $k)))
      (else (local.set $sK (local.get $n)) (local.set $sJ (i32.const 1))))
    (local.set $j (i32.const 0))
    (loop $cols
      (local.set $kk (i32.const 0))
      (local.set $d (i32.add (local.get $dst) (i32.add
        (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (local.get $panelBytes))
        (i32.shl (i32.and (local.get $j) (i32.const 7)) (i32.const 2)))))
      (loop $ks
        (f32.store (local.get $d)
          (if (result f32) (i32.and (i32.lt_u (local.get $j) (local.get $n)) (i32.lt_u (local.get $kk) (local.get $k)))
            (then (f32.load (i32.add (local.get $src) (i32.shl
              (i32.add (i32.mul (local.get $kk) (local.get $sK)) (i32.mul (local.get $j) (local.get $sJ)))
              (i32.const 2)))))
            (else (f32.const 0))))
        (local.set $d (i32.add (local.get $d) (i32.const 32)))
        (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
        (br_if $ks (i32.lt_u (local.get $kk) (local.get $k4))))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br_if $cols (i32.lt_u (local.get $j) (local.get $n8)))))

  ;; ----------------------------------------------------------------- gemm
  ;; C[m][n] = packed A · packed B; k4 > 0 is the padded inner size.
  (func $gemm (param $pa i32) (param $pb i32) (param $c i32) (param $m i32) (param $n i32)
              (param $k4 i32) (param $tmp i32)
    (local $i i32) (local $j i32) (local $panel i32) (local $block i32)
    (local $ap i32) (local $bp i32) (local $aEnd i32) (local $cp i32)
    (local $rowBytes i32) (local $blockBytes i32) (local $panelBytes i32)
    (local $rows i32) (local $cols i32) (local $t i32) (local $u i32)
    (local $b0 v128) (local $b1 v128) (local $av v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $blockBytes (i32.shl (local.get $k4) (i32.const 4)))
    (local.set $panelBytes (i32.shl (local.get $k4) (i32.const 5)))
    (local.set $panel (local.get $pb))
    (local.set $j (i32.const 0))
    (loop $panels
      (local.set $block (local.get $pa))
      (local.set $i (i32.const 0))
      (loop $blocks
        (local.set $c00 (v128.const i32x4 0 0 0 0))
        (local.set $c01 (v128.const i32x4 0 0 0 0))
        (local.set $c10 (v128.const i32x4 0 0 0 0))
        (local.set $c11 (v128.const i32x4 0 0 0 0))
        (local.set $c20 (v128.const i32x4 0 0 0 0))
        (local.set $c21 (v128.const i32x4 0 0 0 0))
        (local.set $c30 (v128.const i32x4 0 0 0 0))
        (local.set $c31 (v128.const i32x4 0 0 0 0))
        (local.set $ap (local.get $block))
        (local.set $bp (local.get $panel))
        (local.set $aEnd (i32.add (local.get $block) (local.get $blockBytes)))
        (loop $ks
          (local.set $b0 (v128.load offset=0 (local.get $bp)))
          (local.set $b1 (v128.load offset=16 (local.get $bp)))
          (local.set $av (v128.load32_splat offset=0 (local.get $ap)))
          (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $av) (local.get $b0))))
          (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $av) (local.get $b1))))
          (local.set $av (v128.load32_splat offset=4 (local.get $ap)))
          (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $av) (local.get $b0))))
          (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $av) (local.get $b1))))
          (local.set $av (v128.load32_splat offset=8 (local.get $ap)))
          (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $av) (local.get $b0))))
          (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $av) (local.get $b1))))
          (local.set $av (v128.load32_splat offset=12 (local.get $ap)))
          (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $av) (local.get $b0))))
          (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $av) (local.get $b1))))
          (local.set $ap (i32.add (local.get $ap) (i32.const 16)))
          (local.set $bp (i32.add (local.get $bp) (i32.const 32)))
          (br_if $ks (i32.lt_u (local.get $ap) (local.get $aEnd))))

        ;; store the tile C[i .. i+3][j .. j+7]
        (local.set $cp (i32.add (local.get $c) (i32.shl
          (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j)) (i32.const 2))))
        (if (i32.and (i32.le_u (i32.add (local.get $i) (i32.const 4)) (local.get $m))
                     (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $n)))
          (then
            (v128.store (local.get $cp) (local.get $c00))
            (v128.store offset=16 (local.get $cp) (local.get $c01))
            (local.set $cp (i32.add (local.get $cp) (local.get $rowBytes)))
            (v128.store (local.get $cp) (local.get $c10))
            (v128.store offset=16 (local.get $cp) (local.get $c11))
            (local.set $cp (i32.add (local.get $cp) (local.get $rowBytes)))
            (v128.store (local.get $cp) (local.get $c20))
            (v128.store offset=16 (local.get $cp) (local.get $c21))
            (local.set $cp (i32.add (local.get $cp) (local.get $rowBytes)))
            (v128.store (local.get $cp) (local.get $c30))
            (v128.store offset=16 (local.get $cp) (local.get $c31)))
          (else
            ;; edge tile: through the scratch tile, only the part inside C
            (v128.store offset=0 (local.get $tmp) (local.get $c00))
            (v128.store offset=16 (local.get $tmp) (local.get $c01))
            (v128.store offset=32 (local.get $tmp) (local.get $c10))
            (v128.store offset=48 (local.get $tmp) (local.get $c11))
            (v128.store offset=64 (local.get $tmp) (local.get $c20))
            (v128.store offset=80 (local.get $tmp) (local.get $c21))
            (v128.store offset=96 (local.get $tmp) (local.get $c30))
            (v128.store offset=112 (local.get $tmp) (local.get $c31))
            (local.set $rows (select (i32.const 4) (i32.sub (local.get $m) (local.get $i))
              (i32.le_u (i32.add (local.get $i) (i32.const 4)) (local.get $m))))
            (local.set $cols (select (i32.const 8) (i32.sub (local.get $n) (local.get $j))
              (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $n))))
            (local.set $t (i32.const 0))
            (loop $tileRows
              (local.set $u (i32.const 0))
              (loop $tileCols
                (f32.store
                  (i32.add (local.get $cp) (i32.shl (local.get $u) (i32.const 2)))
                  (f32.load (i32.add (local.get $tmp)
                    (i32.shl (i32.add (i32.shl (local.get $t) (i32.const 3)) (local.get $u)) (i32.const 2)))))
                (local.set $u (i32.add (local.get $u) (i32.const 1)))
                (br_if $tileCols (i32.lt_u (local.get $u) (local.get $cols))))
              (local.set $cp (i32.add (local.get $cp) (local.get $rowBytes)))
              (local.set $t (i32.add (local.get $t) (i32.const 1)))
              (br_if $tileRows (i32.lt_u (local.get $t) (local.get $rows))))))

        (local.set $block (local.get $aEnd))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br_if $blocks (i32.lt_u (local.get $i) (local.get $m))))
      (local.set $panel (i32.add (local.get $panel) (local.get $panelBytes)))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br_if $panels (i32.lt_u (local.get $j) (local.get $n)))))

  ;; ------------------------------------------------------------------ run
  ;; count batch elements; a, b, c point at the first matrix of each (stored
  ;; as given: A is [m][k], or [k][m] when transA; B is [k][n], or [n][k] when
  ;; transB); pa needs 4·m4·k4 bytes, pb 4·n8·k4 bytes, tmp 128 bytes.
  ;; m, n, k, count > 0.
  (func (export "run") (param $count i32) (param $a i32) (param $b i32) (param $c i32)
        (param $m i32) (param $k i32) (param $n i32) (param $transA i32) (param $transB i32)
        (param $pa i32) (param $pb i32) (param $tmp i32)
    (local $done i32) (local $aBytes i32) (local $bBytes i32) (local $cBytes i32) (local $k4 i32)
    (local.set $k4 (i32.and (i32.add (local.get $k) (i32.const 3)) (i32.const -4)))
    (local.set $aBytes (i32.shl (i32.mul (local.get $m) (local.get $k)) (i32.const 2)))
    (local.set $bBytes (i32.shl (i32.mul (local.get $k) (local.get $n)) (i32.const 2)))
    (local.set $cBytes (i32.shl (i32.mul (local.get $m) (local.get $n)) (i32.const 2)))
    (local.set $done (i32.const 0))
    (loop $batch
      (call $packA (local.get $a) (local.get $pa) (local.get $m) (local.get $k) (local.get $transA))
      (call $packB (local.get $b) (local.get $pb) (local.get $k) (local.get $n) (local.get $transB))
      (call $gemm (local.get $pa) (local.get $pb) (local.get $c) (local.get $m) (local.get $n)
                  (local.get $k4) (local.get $tmp))
      (local.set $a (i32.add (local.get $a) (local.get $aBytes)))
      (local.set $b (i32.add (local.get $b) (local.get $bBytes)))
      (local.set $c (i32.add (local.get $c) (local.get $cBytes)))
      (local.set $done (i32.add (local.get $done) (i32.const 1)))
      (br_if $batch (i32.lt_u (local.get $done) (local.get $count)))))
)
