// File: coordinator/analyzer/category_model.h
// The trained category classifier: multinomial logistic regression over the hashed features of
// text_features.h. Predict() gives a probability per category (they sum to 1), so callers can
// use the margin and the entropy, not only the arg-max. About 10 us for a long prompt.
//
// The model file (written by loom_analyzer_train, see coordinator/analyzer/train.sh):
//   "LOOMCAT1"  u32 format 1, u32 feature version, u32 hash bits, u32 classes (8)
//   f32 scale, f32 bias[8], f32 lexicon[8][8], i8 weights[2^bits][8] (weight = i8 * scale),
//   u64 FNV-1a checksum of everything before it. Little-endian. Classes are in kAllCategories
//   order. Besides the hashed features, the model reads the hand-written lexicon's eight scores
//   (log(1 + score), LexiconFeatures()): prior knowledge that reaches prompts unlike any it was
//   trained on.
// A file that is short, has another magic, format or feature version, or fails its checksum is
// refused with INVALID_ARGUMENT naming what is wrong.
//
// Builtin() is the model compiled into the binary (coordinator/analyzer/model/); the product
// needs no data file at run time. Immutable after construction; thread-safe.
//
//   const CategoryModel& m = CategoryModel::Builtin();
//   CategoryProbs p = m.Predict("Translate 'good morning' into Japanese");
//   // p.best() == TASK_CATEGORY_TRANSLATION, p.margin() ~ 0.8
#ifndef LOOM_COORDINATOR_ANALYZER_CATEGORY_MODEL_H_
#define LOOM_COORDINATOR_ANALYZER_CATEGORY_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loom/v1/common.pb.h"

namespace loom {

inline constexpr int kModelClasses = 8;

// Probabilities in kAllCategories order.
struct CategoryProbs {
  std::array<float, kModelClasses> p{};

  v1::TaskCategory best() const;
  v1::TaskCategory second() const;
  float best_p() const;
  float second_p() const;
  float margin() const { return best_p() - second_p(); }
  float entropy() const;  // in bits; 3 is uniform over eight
  float of(v1::TaskCategory c) const;
};

class CategoryModel {
 public:
  static absl::StatusOr<std::unique_ptr<CategoryModel>> FromBytes(absl::string_view bytes);
  static absl::StatusOr<std::unique_ptr<CategoryModel>> FromFile(const std::string& path);
  // The model built into this binary. Crashes if it does not load: that is a build defect.
  static const CategoryModel& Builtin();

  // A model file for these float weights (`weights` is [2^hash_bits][8] row-major), quantised.
  // `lexicon` is [8 lexicon features][8 classes].
  static std::string Encode(int hash_bits, const std::array<float, kModelClasses>& bias,
                            const std::vector<float>& lexicon, const std::vector<float>& weights);

  CategoryProbs Predict(absl::string_view text) const;
  // The same when the caller already has lexicon::Score(text) (saves scoring twice).
  CategoryProbs Predict(absl::string_view text, const std::array<double, 9>& lexicon_scores) const;
  // The same from features already extracted with this model's hash_bits().
  CategoryProbs PredictFeatures(const std::vector<uint32_t>& ids,
                                const std::array<float, kModelClasses>& lexicon) const;

  int hash_bits() const { return hash_bits_; }

 private:
  CategoryModel() = default;

  int hash_bits_ = 0;
  float scale_ = 0;
  std::array<float, kModelClasses> bias_{};
  std::array<float, kModelClasses * kModelClasses> lexicon_{};
  std::vector<int8_t> weights_;
};

// The lexicon's opinion of `text` as model inputs: log(1 + score) per category, kAllCategories
// order (lexicon::Score).
std::array<float, kModelClasses> LexiconFeatures(absl::string_view text);
std::array<float, kModelClasses> LexiconFeatures(const std::array<double, 9>& lexicon_scores);

// Softmax of raw class scores, in place.
void Softmax(std::array<float, kModelClasses>* z);

}  // namespace loom

#endif  // LOOM_COORDINATOR_ANALYZER_CATEGORY_MODEL_H_
