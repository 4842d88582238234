// File: coordinator/front/embeddings_api.h
// OpenAI's embeddings endpoint (POST /v1/embeddings) on the wire: `model`, `input` as a string
// or an array of strings, `encoding_format` float (default) or base64 (what the openai npm SDK
// asks for by default), `dimensions`, `user` (ignored). Token-id inputs (arrays of integers)
// are refused by name: devices are given text.
//
//   EmbeddingsCall call;
//   absl::Status s = ParseEmbeddingsRequest(body, &call);    // 400 text naming the field
//   nlohmann::json out = EmbeddingsJson(call, result.response, result.tokens);
#ifndef LOOM_COORDINATOR_FRONT_EMBEDDINGS_API_H_
#define LOOM_COORDINATOR_FRONT_EMBEDDINGS_API_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "loom/v1/worker.pb.h"
#include "nlohmann/json.hpp"

namespace loom {

inline constexpr int kMaxEmbeddingInputs = 2048;
inline constexpr int kMaxEmbeddingDimensions = 8192;

struct EmbeddingsCall {
  std::string model;
  std::vector<std::string> input;
  bool base64 = false;
  int dimensions = 0;  // 0: the model's own
};

// INVALID_ARGUMENT naming the field for anything malformed or unsupported.
absl::Status ParseEmbeddingsRequest(const std::string& body, EmbeddingsCall* out);

// The response object: one {"object": "embedding", "index", "embedding"} per input (floats, or
// base64 of little-endian float32 when asked), "model", "usage".
nlohmann::json EmbeddingsJson(const EmbeddingsCall& call, const v1::EmbedResponse& response,
                              int64_t tokens);

// Little-endian float32 bytes of `values`, base64: OpenAI's encoding_format "base64".
std::string Base64Floats(const google::protobuf::RepeatedField<float>& values);

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_EMBEDDINGS_API_H_
