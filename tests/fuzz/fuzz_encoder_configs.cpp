// The JSON configs that come with downloaded encoder weights: a diffusers AutoencoderKL
// config.json (encoders/autoencoder_kl.cpp), the CLIP text and image towers' configs in the HF and
// open_clip forms (encoders/clip_text.cpp, encoders/clip_vision.cpp) and an HF
// preprocessor_config.json (image/clip_preprocess.cpp). The first byte picks the reader, the rest
// is the file. Whatever it holds, the reader returns a config whose derived sizes are defined (no
// overflow) or throws one line; the callers put the file's name in front (tested beside them).
#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "microdit/encoders/autoencoder_kl.h"
#include "microdit/encoders/clip_text.h"
#include "microdit/encoders/clip_vision.h"
#include "microdit/image/clip_preprocess.h"
#include "microdit/io/json.h"

namespace enc = microdit::encoders;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = microdit::fuzz::bytes_of(data + 1, size - 1);
  microdit::fuzz::expect_clean_error("", [&] {  // the callers name the file
    const auto json = microdit::io::parse_json(rest, "config.json");
    switch (data[0] % 6) {
      case 0: {
        const auto c = enc::AutoencoderKLConfig::from_json(json);
        (void)c.downsample_factor();
        break;
      }
      case 1:
        (void)enc::CLIPTextConfig::from_hf_json(json).mlp_width();
        break;
      case 2:
        (void)enc::CLIPTextConfig::from_open_clip_json(json).mlp_width();
        break;
      case 3:
        (void)enc::CLIPVisionConfig::from_hf_json(json).layer_config().mlp_width();
        break;
      case 4:
        (void)enc::CLIPVisionConfig::from_open_clip_json(json).layer_config().mlp_width();
        break;
      default:
        (void)microdit::image::CLIPImagePreprocess::from_hf_json(json);
        break;
    }
  });
  return 0;
}
