// File: tests/fakes/category_models.h
// Tiny category models for tests: every hashed and lexicon weight zero, so a prediction is the
// softmax of `bias` whatever the text. UnsureModel() gives every category 1/8.
#ifndef LOOM_TESTS_FAKES_CATEGORY_MODELS_H_
#define LOOM_TESTS_FAKES_CATEGORY_MODELS_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/analyzer/category_model.h"

namespace loom {

inline constexpr int kTestModelBits = 10;

// The model file's bytes (kAllCategories order for `bias`).
inline std::string BiasOnlyModelBytes(const std::array<float, kModelClasses>& bias) {
  return CategoryModel::Encode(kTestModelBits, bias,
                               std::vector<float>(kModelClasses * kModelClasses, 0),
                               std::vector<float>((size_t{1} << kTestModelBits) * kModelClasses, 0));
}

inline std::unique_ptr<CategoryModel> BiasOnlyModel(const std::array<float, kModelClasses>& bias) {
  return std::move(*CategoryModel::FromBytes(BiasOnlyModelBytes(bias)));
}

inline std::unique_ptr<CategoryModel> UnsureModel() { return BiasOnlyModel({}); }

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_CATEGORY_MODELS_H_
