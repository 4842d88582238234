// File: coordinator/analyzer/request_analyzer.h
// Decides how a request is served: PASSTHROUGH (one model), COMPILED (split into sub-tasks) or
// COMPETE (several models answer, one answer wins). Deterministic, no model call, tens of
// microseconds; it explains itself in `reasons`.
//
// How it reads a request (the last user message):
//  - It splits the text into asks: enumerations ("1." / "-" / "first, ... second,"), sentences,
//    and connectors ("and then", "then", "also", "after that", "; ", "and <verb>"). A piece
//    that is neither an instruction nor a question (a pasted passage, code after a colon) is
//    context, not an ask.
//  - Each ask's category comes from the trained classifier (analyzer/category_model.h: a
//    probability per category, learnt from labelled prompts written by people outside the
//    project). A hand-written lexicon per category also scores each ask (instruction words
//    count fully; text after a colon or inside quotes counts 0.3, so a pasted email does not
//    make the request "about" the email's words); the classifier reads those scores as inputs,
//    and the splitter uses them to tell an ask with no skill of its own (it merges into its
//    neighbour). `lexicon_only` makes the lexicon decide, as before the classifier.
//  - Adjacent asks of the same category merge unless the client explicitly asked for several
//    outputs (enumerations, "then", "also", "after that").
// Then: two or more asks left -> COMPILED. One ask whose two most likely categories are nearly
// tied, or a short vague request -> COMPETE (several models, the best answer wins). One ask the
// classifier is unsure of (best probability under `unsure_below`) -> PASSTHROUGH to a GENERAL
// model, as Robust-CoE falls back to a generalist: a wrong specialist does worse than a
// generalist, and competing would multiply the cost of every unclear prompt. Otherwise
// PASSTHROUGH to the category's best model. A forced mode, or a pinned model/family, wins over
// all of this.
//
// Thread-safe (stateless after construction).
#ifndef LOOM_COORDINATOR_ANALYZER_REQUEST_ANALYZER_H_
#define LOOM_COORDINATOR_ANALYZER_REQUEST_ANALYZER_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/analyzer/category_model.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

struct AnalyzerOptions {
  // The classifier; null means CategoryModel::Builtin(). Not owned; must outlive the analyzer.
  const CategoryModel* model = nullptr;
  bool lexicon_only = false;        // the lexicon decides categories (the analyzer before v2)
  double unsure_below = 0.25;       // classifier's best probability below this: GENERAL
  double tie_margin = 0.08;         // best minus second under this ...
  double tie_min = 0.35;            // ... with the second at least this: a tie, COMPETE
  double fragment_sure = 0.6;       // one ask of several: below this the lexicon's cue decides
  double compete_tie_ratio = 0.8;   // lexicon_only: second score >= this x the first: a tie
  double compete_min_score = 1.0;   // ...if the second scores at least this much
  double min_signal = 0.5;          // lexicon score below this: an ask has no skill of its own
  int vague_max_words = 8;          // a vague request is this short or shorter
  // A compiled plan sends the conversation before the ask to every part; past this many tokens
  // of earlier turns the request goes whole to one model instead.
  int64_t max_compiled_history_tokens = 2048;
  // A single ask of at most this many tokens (common/tokens.h) after an earlier user turn is a
  // follow-up ("and in Python?", "再长一点"): its category is read from both turns (the mean of
  // their probabilities), and being short is not being vague. 0: every ask is read alone.
  int64_t follow_up_max_tokens = 20;
  // A system message that sets the task ("Translate the user's messages into French", "Reply
  // with one SQL query") is read as the prior of a single ask, when the classifier gives it a
  // skill other than general with at least this probability and the lexicon finds a cue for the
  // same skill scoring at least system_task_min_cue ("You are a helpful assistant" sets none).
  double system_task_sure = 0.5;
  double system_task_min_cue = 1.0;
};

// One thing the client asked for.
struct Ask {
  std::string text;                    // the instruction, as written
  v1::TaskCategory category = v1::TASK_CATEGORY_GENERAL;
  std::array<double, 9> scores{};      // raw lexicon score, indexed by TaskCategory
  CategoryProbs probs;                 // the classifier's view of the ask (unset: lexicon_only)
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
  bool follow_up = false;    // a short ask read with the earlier user turn it continues
  bool system_task = false;  // a single ask read with the task its system message sets
};

class RequestAnalyzer {
 public:
  explicit RequestAnalyzer(AnalyzerOptions options = {});

  Analysis Analyze(const v1::CompleteRequest& request, int64_t max_output_tokens = 512) const;

  // The analysis of one piece of text (no forced mode), for tools and tests.
  Analysis AnalyzeText(const std::string& text, int64_t max_output_tokens = 512) const;

  // Raw lexicon scores of `text`, indexed by TaskCategory.
  static std::array<double, 9> Score(const std::string& text);

 private:
  // What step 1 already learnt about the whole text, when one piece was all of it.
  struct WholeText {
    std::optional<std::array<double, 9>> scores;  // lexicon
    std::optional<CategoryProbs> probs;           // classifier
  };
  // What a single ask is read with besides its own text: the classifier's reading of the turn
  // a short follow-up continues, or of the task the system message sets.
  struct Prior {
    CategoryProbs probs;
    bool from_system = false;
  };
  Analysis AnalyzeText(const std::string& text, int64_t max_output_tokens, const Prior* prior) const;
  Analysis Decide(const std::string& text, Analysis a, int64_t max_output_tokens,
                  const WholeText& whole, const Prior* prior) const;
  // The reading of the system messages of `request` when they set a task (see
  // AnalyzerOptions::system_task_sure); nothing otherwise.
  std::optional<CategoryProbs> SystemTask(const v1::CompleteRequest& request) const;
  // The reading of the user turn that `ask` follows up: the latest earlier one (of the last
  // eight) with a skill of its own (not general, not unsure), else the latest one.
  std::optional<CategoryProbs> TopicBefore(const v1::CompleteRequest& request,
                                           const std::string& ask) const;
  Ask InstructionAsk(const std::string& piece, std::string* instr, std::string* payload) const;
  // The steps after the split into asks (request_analyzer.cc numbers them).
  int Categorize(Analysis* a) const;
  void MergeAsks(Analysis* a) const;
  Analysis Compile(const std::string& text, Analysis a, int64_t max_output_tokens,
                   int aspect_lists, int lexicon_decided) const;

  const AnalyzerOptions options_;
  const CategoryModel& model_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_ANALYZER_REQUEST_ANALYZER_H_
