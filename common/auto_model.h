// File: common/auto_model.h
// The model name that lets Loom decide: the analyzer picks the plan, and it is also the
// default policy's name (coordinator/mesh/policy.h). What a client sends when it names no mesh
// model; the one spelling of "loom-auto" in the code.
#ifndef LOOM_COMMON_AUTO_MODEL_H_
#define LOOM_COMMON_AUTO_MODEL_H_

namespace loom {

inline constexpr char kAutoModel[] = "loom-auto";

}  // namespace loom

#endif  // LOOM_COMMON_AUTO_MODEL_H_
