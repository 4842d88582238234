// File: coordinator/request_analyzer.h
// Decides how a request is served: PASSTHROUGH (one model), COMPILED (split into sub-tasks) or
// COMPETE (several models answer, one answer wins). Deterministic, no model call, a few
// microseconds; it explains itself in `reasons`.
//
// How it reads a request (the last user message):
//  - It splits the text into asks: enumerations ("1." / "-" / "first, ... second,"), sentences,
//    and connectors ("and then", "then", "also", "after that", "; ", "and <verb>"). A piece
//    that is neither an instruction nor a question (a pasted passage, code after a colon) is
//    context, not an ask.
//  - It scores each ask against a lexicon per category (instruction words count fully; text
//    after a colon or inside quotes counts 0.3 or not at all, so a pasted email does not make
//    the request "about" the email's words). Translating between programming languages is
//    code; "translation" is between natural languages.
//  - Adjacent asks of the same category merge unless the client explicitly asked for several
//    outputs (enumerations, "then", "also", "after that").
// Then: two or more asks left -> COMPILED. One ask whose two best categories are nearly tied,
// or a short vague request with no category signal -> COMPETE. Otherwise PASSTHROUGH, with
// GENERAL when nothing scores. A forced mode, or a pinned model/family, wins over all of this.
//
// Thread-safe (stateless after construction).
#ifndef LOOM_COORDINATOR_REQUEST_ANALYZER_H_
#define LOOM_COORDINATOR_REQUEST_ANALYZER_H_

#include <array>
#include <string>
#include <vector>

#include "loom/v1/orchestrator.pb.h"

namespace loom {

struct AnalyzerOptions {
  double compete_tie_ratio = 0.8;   // second category >= this x the first: a tie
  double compete_min_score = 1.0;   // ...if the second scores at least this much
  double min_signal = 0.5;          // below this an ask has no category signal
  int vague_max_words = 8;          // a vague request is this short or shorter
};

// One thing the client asked for.
struct Ask {
  std::string text;                    // the instruction, as written
  v1::TaskCategory category = v1::TASK_CATEGORY_GENERAL;
  std::array<double, 9> scores{};      // raw lexicon score, indexed by TaskCategory
  bool explicit_separate = false;      // introduced by an enumeration, "then", "also", ...
  bool sequential = false;             // introduced by "then" / "after that"
  bool refers_back = false;            // mentions an earlier result ("it", "the two", ...)
};

struct Analysis {
  v1::PlanKind kind = v1::PLAN_KIND_PASSTHROUGH;
  std::vector<v1::CategoryScore> categories;  // whole request, best first, normalised to sum 1
  int64_t estimated_tokens = 0;               // prompt tokens + expected output
  std::vector<std::string> reasons;
  std::vector<Ask> asks;                      // in request order
  std::string context;                        // text that is not an ask (pasted material)
};

class RequestAnalyzer {
 public:
  explicit RequestAnalyzer(AnalyzerOptions options = {}) : options_(options) {}

  Analysis Analyze(const v1::CompleteRequest& request, int64_t max_output_tokens = 512) const;

  // The analysis of one piece of text (no forced mode), for tools and tests.
  Analysis AnalyzeText(const std::string& text, int64_t max_output_tokens = 512) const;

  // Raw lexicon scores of `text`, indexed by TaskCategory.
  static std::array<double, 9> Score(const std::string& text);

 private:
  const AnalyzerOptions options_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_REQUEST_ANALYZER_H_
