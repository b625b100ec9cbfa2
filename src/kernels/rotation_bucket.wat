;; The rotation hash's bucket of each row: the argmax over [p ; −p].
;;
;; For each of `rows` rows of `m` floats p (back to back at `data`), writes
;; the int32 bucket at `out`:
;;
;;   bucket = max p >= −min p ? (first index of max p) : m + (first index of min p)
;;
;; which is argmax over the 2m values [p ; −p] with the first index winning
;; ties (the first half wins a tie between max p and −min p), without
;; building [p ; −p]. One pass over the row, scalar (a row is m = K/2 floats,
;; a few dozen). Pointers are byte offsets into the module's own memory.
;;
;; Regenerate the embedded bytes after editing: npm run build:wasm

(module
  (memory (export "memory") 1)

  (func (export "run") (param $rows i32) (param $m i32) (param $data i32) (param $out i32)
    (local $row i32) (local $j i32) (local $v f32)
    (local $max f32) (local $min f32) (local $maxAt i32) (local $minAt i32)
    (if (i32.or (i32.le_s (local.get $rows) (i32.const 0)) (i32.le_s (local.get $m) (i32.const 0))) (then (return)))
    (loop $rowLoop
      (local.set $max (f32.load (local.get $data)))
      (local.set $min (local.get $max))
      (local.set $maxAt (i32.const 0))
      (local.set $minAt (i32.const 0))
      (local.set $j (i32.const 1))
      (local.set $data (i32.add (local.get $data) (i32.const 4)))
      (block $rowDone
        (loop $colLoop
          (br_if $rowDone (i32.ge_u (local.get $j) (local.get $m)))
          (local.set $v (f32.load (local.get $data)))
          (if (f32.gt (local.get $v) (local.get $max))
            (then (local.set $max (local.get $v)) (local.set $maxAt (local.get $j))))
          (if (f32.lt (local.get $v) (local.get $min))
            (then (local.set $min (local.get $v)) (local.set $minAt (local.get $j))))
          (local.set $data (i32.add (local.get $data) (i32.const 4)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $colLoop)))
      (i32.store (local.get $out)
        (select
          (local.get $maxAt)
          (i32.add (local.get $minAt) (local.get $m))
          (f32.ge (local.get $max) (f32.neg (local.get $min)))))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br_if $rowLoop (i32.lt_u (local.get $row) (local.get $rows)))))
)
