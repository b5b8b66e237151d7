#!/usr/bin/env bash
# bad_files.sh BINDIR: feeds each tool a handful of bad files (garbage, truncated, empty, of
# another model, hostile text) and checks the promise of docs/errors: exactly one line on stderr,
# naming the tool and the file, exit 1 (2 for bad arguments), no crash.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
data=$here/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # check RC PATTERN COMMAND...
  local out
  if out=$("$here/cli_one_line.sh" "$@"); then
    echo "ok   ${*:3}"
  else
    echo "FAIL ${*:3}"
    echo "$out" | sed 's/^/     /'
    failures=$((failures + 1))
  fi
}

# The bad files.
head -c 4096 /dev/urandom >"$work/garbage.safetensors"
cp "$work/garbage.safetensors" "$work/garbage.pt"
: >"$work/empty.safetensors"
head -c 100 "$data/reference/microdit-official-tiny/weights.safetensors" >"$work/truncated.safetensors"
printf 'run: {dir: [unclosed\n' >"$work/broken.yaml"
printf 'run:\n  dir: %s\n\x1b[31m: 1\n' "$work/run" >"$work/escape.yaml"
mkdir -p "$work/empty_mds" "$work/bad_vae" "$work/images" "$work/generated"
cp "$data/decode/filters_rgb.png" "$work/generated/00000.png"
printf '{"_class_name": "AutoencoderKL", "layers_per_block": ' >"$work/bad_vae/config.json"
cp "$data/vae/tiny/diffusion_pytorch_model.safetensors" "$work/bad_vae/"
printf 'not an image' >"$work/images/0.png"
printf 'a caption\n' >"$work/images/0.txt"
enc=(--vae "$data/vae/tiny" --text-encoder "$data/clip_text/open_clip.safetensors"
     --text-config "$data/clip_text/open_clip_config.json"
     --tokenizer "$data/tokenizer/bpe_simple_vocab_16e6.txt.gz")

# microdit-train
check 2 "^microdit-train: .*broken\.yaml" "$bin/microdit-train" --config "$work/broken.yaml"
check 2 "^microdit-train: .*\\\\x1b" "$bin/microdit-train" --config "$work/escape.yaml"
check 1 "^microdit-train: .*garbage\.safetensors" "$bin/microdit-train" --config configs/debug_tiny.yaml \
  --set run.dir="$work/run1" --set optim.continue_from="$work/garbage.safetensors"
check 1 "^microdit-train: .*truncated\.safetensors" "$bin/microdit-train" --config configs/debug_tiny.yaml \
  --set run.dir="$work/run2" --set optim.continue_from="$work/truncated.safetensors"
check 1 "^microdit-train: .*empty_mds" "$bin/microdit-train" --config configs/debug_tiny.yaml \
  --set run.dir="$work/run3" --set data.kind=mds --set data.mds_dirs="[$work/empty_mds]"
# microdit-sample
for weights in garbage.safetensors garbage.pt empty.safetensors truncated.safetensors; do
  check 1 "^microdit-sample: .*$weights" "$bin/microdit-sample" --checkpoint "$work/$weights" \
    "${enc[@]}" --out "$work/samples" --prompt "a cat"
done
check 1 "^microdit-sample: .*weights\.safetensors: the weights are not of this model \(1165442320 parameters\)" \
  "$bin/microdit-sample" --checkpoint "$data/reference/microdit-official-tiny/weights.safetensors" \
  "${enc[@]}" --out "$work/samples" --prompt "a cat"
check 1 "^microdit-sample: .*no/such/prompts\.txt" "$bin/microdit-sample" \
  --checkpoint "$data/reference/microdit-official-tiny/weights.safetensors" "${enc[@]}" \
  --out "$work/samples" --prompts no/such/prompts.txt
# microdit-prepare
check 1 "^microdit-prepare: .*bad_vae/config\.json" "$bin/microdit-prepare" --out "$work/prepared" \
  --vae "$work/bad_vae" --text-encoder "$data/clip_text/open_clip.safetensors" \
  --text-config "$data/clip_text/open_clip_config.json" \
  --tokenizer "$data/tokenizer/bpe_simple_vocab_16e6.txt.gz" --resolutions 16 "$work/images"
check 1 "^microdit-prepare: .*garbage\.pt" "$bin/microdit-prepare" --out "$work/prepared" \
  --vae "$data/vae/tiny" --text-encoder "$work/garbage.pt" \
  --text-config "$data/clip_text/open_clip_config.json" \
  --tokenizer "$data/tokenizer/bpe_simple_vocab_16e6.txt.gz" --resolutions 16 "$work/images"
printf '{"text_cfg": {"width": "wide"}}' >"$work/bad_text_config.json"
check 1 "^microdit-prepare: .*bad_text_config\.json: CLIP text config: width" \
  "$bin/microdit-prepare" --out "$work/prepared" --vae "$data/vae/tiny" \
  --text-encoder "$data/clip_text/open_clip.safetensors" --text-config "$work/bad_text_config.json" \
  --tokenizer "$data/tokenizer/bpe_simple_vocab_16e6.txt.gz" --resolutions 16 "$work/images"
# microdit-eval
check 1 "^microdit-eval: .*images: no readable images" "$bin/microdit-eval" --generated "$work/images" \
  --out "$work/result.json" --inception "$data/fid/clean_inception_random.pt" \
  --real-stats "$data/fid/stats16.npz"
for stats in "$work/garbage.safetensors" "$work/empty.safetensors" "$data/fid/huge_shape.npz"; do
  check 1 "^microdit-eval: $stats: " "$bin/microdit-eval" --generated "$work/generated" \
    --out "$work/result.json" --inception "$data/fid/clean_inception_random.pt" --real-stats "$stats"
done
check 1 "^microdit-eval: .*garbage\.pt" "$bin/microdit-eval" --generated "$work/generated" \
  --out "$work/result.json" --inception "$work/garbage.pt" --real-stats "$data/fid/stats16.npz"
# microdit-check-reference
mkdir -p "$work/reference"
cp "$work/garbage.safetensors" "$work/reference/cases.safetensors"
cp "$data/reference/microdit-official-tiny/config.json" "$data/reference/microdit-official-tiny/weights.safetensors" "$work/reference/"
check 2 "^microdit-check-reference: .*cases\.safetensors" "$bin/microdit-check-reference" "$work/reference"
# microdit-bench
check 2 "^microdit-bench: .*broken\.yaml" "$bin/microdit-bench" --config "$work/broken.yaml"

[ "$failures" = 0 ] || { echo "$failures failed"; exit 1; }
echo "all bad files: one line each"
