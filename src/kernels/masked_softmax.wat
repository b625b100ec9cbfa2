;; Masked softmax over rows, f32, WebAssembly 128-bit SIMD.
;;
;; For each of `rows` rows of `len` floats (rows back to back, no gaps):
;;
;;   masked[i] = fill[i] == 0 ? logits[i] : fill[i]    (masks replace logits)
;;   max       = max_i masked[i]
;;   e[i]      = exp(masked[i] - max)
;;   sum       = Σ_i e[i]                               (accumulated in f64)
;;   out[i]    = e[i] · f32(1 / sum)
;;
;; `data` holds the logits on entry and the weights on return (in place);
;; `fill` is read only; stats[row] = (f64 max, f64 sum), 16 bytes per row
;; (the caller takes log(sum) in JavaScript: wasm has no log instruction).
;;
;; Three passes over a row (a row of 128 floats is 512 bytes, in L1):
;;   1. mask and maximum (pmax: one maxps; a NaN logit leaves the maximum
;;      alone and still makes its row NaN in pass 2),
;;   2. exp and sum: the sum is kept as two f64x2 (low and high lanes of
;;      each f32x4 promoted), relative error ~len·1e-16,
;;   3. scale by the reciprocal of the sum.
;; Rows whose length is not a multiple of 4 finish with scalar steps (exp
;; through $exp4 on a splat).
;;
;; exp(x) for x <= 0 (as here: x = masked - max), the "rr2-p5" scheme of
;; XNNPACK's f32 expminus/softmax kernels (its constants):
;;   n = round(x·log2 e), by adding the magic bias 0x1.8000FEp23 (ulp 1, and
;;       ≡ 127 mod 2^22, so the sum's bits shifted left by 23 are the f32
;;       2^n directly; subtracting the bias again gives n as a float),
;;   t = x - n·ln2_hi - n·ln2_lo (Cody–Waite; ln2_hi has 7 trailing zero
;;       bits, so n·ln2_hi is exact),
;;   p = c1 + t·(c2 + t·(c3 + t·(c4 + t·c5))) (minimax on [-ln2/2, ln2/2]),
;;   exp(x) = 2^n + (t·2^n)·p;
;;   x below -0x1.5D589Ep6 (≈ -87.34, where exp leaves the normal range)
;;   gives exactly 0: -1e9 - anything, -inf included, comes out as 0, and the
;;   garbage the bit trick makes there is masked away. Relative error ≈ 2e-7
;;   (measured, including the final rounding); a NaN stays NaN.
;; The exp is written out inline in the main loop (so as not to depend on the
;; engine inlining a call); $exp4 is the same code for the scalar tail.
;;
;; Memory is the module's own (exported as "memory"); the caller lays out the
;; rows, the fill and the stats and grows it when needed. Pointers are byte
;; offsets; stats must be 8-byte aligned.
;;
;; Regenerate the embedded bytes after editing: npm run build:wasm

(module
  (memory (export "memory") 1)

  ;; exp of four lanes (see above); used for the scalar tail of a row.
  (func $exp4 (param $x v128) (result v128)
    (local $t v128) (local $k v128) (local $r v128) (local $q v128)
    (local.set $k (f32x4.add (f32x4.mul (local.get $x) (v128.const f32x4 0x1.715476p+0 0x1.715476p+0 0x1.715476p+0 0x1.715476p+0))
      (v128.const f32x4 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23)))
    (local.set $t (i32x4.shl (local.get $k) (i32.const 23)))
    (local.set $k (f32x4.sub (local.get $k) (v128.const f32x4 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23)))
    (local.set $r (f32x4.add (f32x4.mul (local.get $k) (v128.const f32x4 -0x1.62E400p-1 -0x1.62E400p-1 -0x1.62E400p-1 -0x1.62E400p-1)) (local.get $x)))
    (local.set $r (f32x4.add (f32x4.mul (local.get $k) (v128.const f32x4 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20)) (local.get $r)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $r) (v128.const f32x4 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7))
      (v128.const f32x4 0x1.573A1Ap-5 0x1.573A1Ap-5 0x1.573A1Ap-5 0x1.573A1Ap-5)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
      (v128.const f32x4 0x1.555A80p-3 0x1.555A80p-3 0x1.555A80p-3 0x1.555A80p-3)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
      (v128.const f32x4 0x1.FFFDC6p-2 0x1.FFFDC6p-2 0x1.FFFDC6p-2 0x1.FFFDC6p-2)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
      (v128.const f32x4 0x1.FFFFF6p-1 0x1.FFFFF6p-1 0x1.FFFFF6p-1 0x1.FFFFF6p-1)))
    (v128.andnot
      (f32x4.add (f32x4.mul (f32x4.mul (local.get $r) (local.get $t)) (local.get $q)) (local.get $t))
      (f32x4.lt (local.get $x) (v128.const f32x4 -0x1.5D589Ep+6 -0x1.5D589Ep+6 -0x1.5D589Ep+6 -0x1.5D589Ep+6))))

  ;; ---------------------------------------------------------------- run
  (func (export "run") (param $rows i32) (param $len i32) (param $data i32) (param $fill i32) (param $stats i32)
    (local $row i32) (local $vecBytes i32) (local $rowBytes i32)
    (local $p i32) (local $f i32) (local $end i32) (local $rowEnd i32)
    (local $v v128) (local $m v128) (local $vmax v128) (local $smax f32) (local $s f32)
    (local $x v128) (local $t v128) (local $k v128) (local $r v128) (local $q v128) (local $e v128)
    (local $sumLo v128) (local $sumHi v128) (local $sum f64) (local $inv v128)
    (if (i32.eqz (i32.and (i32.gt_s (local.get $rows) (i32.const 0)) (i32.gt_s (local.get $len) (i32.const 0))))
      (then (return)))
    (local.set $rowBytes (i32.shl (local.get $len) (i32.const 2)))
    ;; Bytes of the row handled 4 lanes at a time.
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $row (i32.const 0))
    (loop $rowsLoop
      (local.set $end (i32.add (local.get $data) (local.get $vecBytes)))
      (local.set $rowEnd (i32.add (local.get $data) (local.get $rowBytes)))

      ;; 1. mask (in place) and maximum.
      (local.set $vmax (v128.const f32x4 -inf -inf -inf -inf))
      (local.set $p (local.get $data))
      (local.set $f (local.get $fill))
      (if (i32.lt_u (local.get $p) (local.get $end))
        (then
          (loop $maskLoop
            (local.set $m (v128.load (local.get $f)))
            (local.set $v (v128.bitselect (v128.load (local.get $p)) (local.get $m)
              (f32x4.eq (local.get $m) (v128.const f32x4 0 0 0 0))))
            (v128.store (local.get $p) (local.get $v))
            (local.set $vmax (f32x4.pmax (local.get $vmax) (local.get $v)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $f (i32.add (local.get $f) (i32.const 16)))
            (br_if $maskLoop (i32.lt_u (local.get $p) (local.get $end))))))
      (local.set $vmax (f32x4.pmax (local.get $vmax)
        (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vmax) (local.get $vmax))))
      (local.set $vmax (f32x4.pmax (local.get $vmax)
        (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $vmax) (local.get $vmax))))
      (local.set $smax (f32x4.extract_lane 0 (local.get $vmax)))
      (block $maskTailDone
        (loop $maskTail
          (br_if $maskTailDone (i32.ge_u (local.get $p) (local.get $rowEnd)))
          (local.set $s (f32.load (local.get $f)))
          (if (f32.eq (local.get $s) (f32.const 0))
            (then (local.set $s (f32.load (local.get $p)))))
          (f32.store (local.get $p) (local.get $s))
          (if (f32.gt (local.get $s) (local.get $smax))
            (then (local.set $smax (local.get $s))))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (local.set $f (i32.add (local.get $f) (i32.const 4)))
          (br $maskTail)))
      (local.set $vmax (f32x4.splat (local.get $smax)))

      ;; 2. exp(masked - max) in place, and the sum in f64.
      (local.set $sumLo (v128.const f64x2 0 0))
      (local.set $sumHi (v128.const f64x2 0 0))
      (local.set $p (local.get $data))
      (if (i32.lt_u (local.get $p) (local.get $end))
        (then
          (loop $expLoop
            (local.set $x (f32x4.sub (v128.load (local.get $p)) (local.get $vmax)))
            ;; exp, as $exp4
            (local.set $k (f32x4.add (f32x4.mul (local.get $x) (v128.const f32x4 0x1.715476p+0 0x1.715476p+0 0x1.715476p+0 0x1.715476p+0))
              (v128.const f32x4 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23)))
            (local.set $t (i32x4.shl (local.get $k) (i32.const 23)))
            (local.set $k (f32x4.sub (local.get $k) (v128.const f32x4 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23 0x1.8000FEp+23)))
            (local.set $r (f32x4.add (f32x4.mul (local.get $k) (v128.const f32x4 -0x1.62E400p-1 -0x1.62E400p-1 -0x1.62E400p-1 -0x1.62E400p-1)) (local.get $x)))
            (local.set $r (f32x4.add (f32x4.mul (local.get $k) (v128.const f32x4 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20 -0x1.7F7D1Cp-20)) (local.get $r)))
            (local.set $q (f32x4.add (f32x4.mul (local.get $r) (v128.const f32x4 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7 0x1.0F9F9Cp-7))
              (v128.const f32x4 0x1.573A1Ap-5 0x1.573A1Ap-5 0x1.573A1Ap-5 0x1.573A1Ap-5)))
            (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
              (v128.const f32x4 0x1.555A80p-3 0x1.555A80p-3 0x1.555A80p-3 0x1.555A80p-3)))
            (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
              (v128.const f32x4 0x1.FFFDC6p-2 0x1.FFFDC6p-2 0x1.FFFDC6p-2 0x1.FFFDC6p-2)))
            (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r))
              (v128.const f32x4 0x1.FFFFF6p-1 0x1.FFFFF6p-1 0x1.FFFFF6p-1 0x1.FFFFF6p-1)))
            (local.set $e (v128.andnot
              (f32x4.add (f32x4.mul (f32x4.mul (local.get $r) (local.get $t)) (local.get $q)) (local.get $t))
              (f32x4.lt (local.get $x) (v128.const f32x4 -0x1.5D589Ep+6 -0x1.5D589Ep+6 -0x1.5D589Ep+6 -0x1.5D589Ep+6))))
            ;; end of exp
            (v128.store (local.get $p) (local.get $e))
            (local.set $sumLo (f64x2.add (local.get $sumLo) (f64x2.promote_low_f32x4 (local.get $e))))
            (local.set $sumHi (f64x2.add (local.get $sumHi) (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br_if $expLoop (i32.lt_u (local.get $p) (local.get $end))))))
      (local.set $sumLo (f64x2.add (local.get $sumLo) (local.get $sumHi)))
      (local.set $sum (f64.add (f64x2.extract_lane 0 (local.get $sumLo)) (f64x2.extract_lane 1 (local.get $sumLo))))
      (block $expTailDone
        (loop $expTail
          (br_if $expTailDone (i32.ge_u (local.get $p) (local.get $rowEnd)))
          (local.set $s (f32x4.extract_lane 0
            (call $exp4 (f32x4.splat (f32.sub (f32.load (local.get $p)) (local.get $smax))))))
          (f32.store (local.get $p) (local.get $s))
          (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (local.get $s))))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (br $expTail)))
      (f64.store (local.get $stats) (f64.promote_f32 (local.get $smax)))
      (f64.store offset=8 (local.get $stats) (local.get $sum))

      ;; 3. divide by the sum (times its reciprocal, rounded once to f32).
      (local.set $inv (f32x4.splat (f32.demote_f64 (f64.div (f64.const 1) (local.get $sum)))))
      (local.set $p (local.get $data))
      (if (i32.lt_u (local.get $p) (local.get $end))
        (then
          (loop $scaleLoop
            (v128.store (local.get $p) (f32x4.mul (v128.load (local.get $p)) (local.get $inv)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br_if $scaleLoop (i32.lt_u (local.get $p) (local.get $end))))))
      (local.set $s (f32x4.extract_lane 0 (local.get $inv)))
      (block $scaleTailDone
        (loop $scaleTail
          (br_if $scaleTailDone (i32.ge_u (local.get $p) (local.get $rowEnd)))
          (f32.store (local.get $p) (f32.mul (f32.load (local.get $p)) (local.get $s)))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (br $scaleTail)))

      (local.set $data (local.get $rowEnd))
      (local.set $fill (i32.add (local.get $fill) (local.get $rowBytes)))
      (local.set $stats (i32.add (local.get $stats) (i32.const 16)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br_if $rowsLoop (i32.lt_u (local.get $row) (local.get $rows)))))

  ;; ---------------------------------------------------------------- fill
  ;; Writes the fill of `rows` rows (rows first .. first+rows-1 of [n, C, L])
  ;; from positions, so the caller need not build (and copy) a dense mask:
  ;;
  ;;   fill[r, k] = kpos[k] == qpos[r]                       ? -1e5  (own position)
  ;;              : kmask[k] or (causal and kpos[k] > qpos[r]) ? -1e9  (masked key)
  ;;              : 0                                                  (kept)
  ;;
  ;; with kpos, kmask the keys of matrix n = r / C ([n, L] int32; kmask 0 or
  ;; -1, all bits), qpos [n·C] int32, causal 0 or 1. L must be a multiple of 4
  ;; (the caller checks). Rows are written back to back at `out`.
  (func (export "fill") (param $first i32) (param $rows i32) (param $c i32) (param $len i32)
    (param $qpos i32) (param $kpos i32) (param $kmask i32) (param $causal i32) (param $out i32)
    (local $r i32) (local $end i32) (local $kp i32) (local $km i32) (local $kend i32) (local $keyOffset i32)
    (local $q v128) (local $pos v128) (local $causalBits v128) (local $masked v128)
    (if (i32.le_s (local.get $rows) (i32.const 0)) (then (return)))
    (local.set $causalBits (i32x4.splat (i32.sub (i32.const 0) (i32.ne (local.get $causal) (i32.const 0)))))
    (local.set $r (local.get $first))
    (local.set $end (i32.add (local.get $first) (local.get $rows)))
    (loop $rowLoop
      (local.set $q (i32x4.splat (i32.load (i32.add (local.get $qpos) (i32.shl (local.get $r) (i32.const 2))))))
      (local.set $keyOffset (i32.shl (i32.mul (i32.div_u (local.get $r) (local.get $c)) (local.get $len)) (i32.const 2)))
      (local.set $kp (i32.add (local.get $kpos) (local.get $keyOffset)))
      (local.set $km (i32.add (local.get $kmask) (local.get $keyOffset)))
      (local.set $kend (i32.add (local.get $kp) (i32.shl (local.get $len) (i32.const 2))))
      (loop $keyLoop
        (local.set $pos (v128.load (local.get $kp)))
        (local.set $masked
          (v128.or (v128.load (local.get $km)) (v128.and (i32x4.gt_s (local.get $pos) (local.get $q)) (local.get $causalBits))))
        (v128.store (local.get $out)
          (v128.bitselect
            (v128.const f32x4 -1e5 -1e5 -1e5 -1e5)
            (v128.and (local.get $masked) (v128.const f32x4 -1e9 -1e9 -1e9 -1e9))
            (i32x4.eq (local.get $pos) (local.get $q))))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $km (i32.add (local.get $km) (i32.const 16)))
        (local.set $kp (i32.add (local.get $kp) (i32.const 16)))
        (br_if $keyLoop (i32.lt_u (local.get $kp) (local.get $kend))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rowLoop (i32.lt_u (local.get $r) (local.get $end)))))
)
