// File: coordinator/analyzer/request_analyzer.cc
#include "coordinator/analyzer/request_analyzer.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/categories.h"
#include "common/tokens.h"
#include "coordinator/analyzer/ask_splitter.h"
#include "coordinator/analyzer/lexicon.h"

namespace loom {
namespace {

using C = v1::TaskCategory;
using asks::AspectIntro;
using asks::FindAspectIntro;
using asks::IntroducesMaterial;
using asks::IsConstraint;
using asks::IsInstruction;
using asks::Normalize;
using asks::Piece;
using asks::SplitConnectors;
using asks::WindowSentences;
using lexicon::CodeSyntax;
using lexicon::HasAny;
using lexicon::SplitInstruction;

// Words that mark a request as vague (no category can be ahead).
constexpr const char* kVague[] = {
    "something", "anything", "thoughts", "surprise", "better", "best take", "nice",
    "think about", "meaning of", "future", "help me with my", "whatever", "fun", "interesting",
    "what would happen"};


// Phrases that mean "the result of an earlier ask".
constexpr const char* kBackReferences[] = {
    "it", "them", "the result", "the results", "the code", "the translation", "the summary",
    "the two", "both", "the above", "this function", "the function", "the story", "the poem",
    "your explanation", "the comparison", "the solution", "the winner", "the same function",
    "you covered", "the two implementations", "the two versions", "the paradox", "the moral",
    "its", "that"};

// The category with the highest score (GENERAL when nothing scores `min_signal`), and the
// runner-up score.
C TopCategory(const std::array<double, 9>& s, double min_signal, double* top, double* second) {
  C best = C::TASK_CATEGORY_GENERAL;
  *top = 0;
  *second = 0;
  for (C c : kAllCategories) {
    if (s[c] > *top) {
      *second = *top;
      *top = s[c];
      best = c;
    } else if (s[c] > *second) {
      *second = s[c];
    }
  }
  if (*top < min_signal) return C::TASK_CATEGORY_GENERAL;
  return best;
}

// Categories whose weight is above `floor` of the total, normalised to sum 1, best first (ties
// by category); GENERAL alone when none is.
std::vector<v1::CategoryScore> RankedCategories(const std::array<double, 9>& weight, double floor) {
  double sum = 0;
  for (C c : kAllCategories) sum += std::max(0.0, weight[c]);
  std::vector<v1::CategoryScore> out;
  for (C c : kAllCategories) {
    if (weight[c] <= 0 || weight[c] < floor * sum) continue;
    v1::CategoryScore cs;
    cs.set_category(c);
    cs.set_score(weight[c] / sum);
    out.push_back(cs);
  }
  std::sort(out.begin(), out.end(), [](const v1::CategoryScore& x, const v1::CategoryScore& y) {
    return x.score() != y.score() ? x.score() > y.score() : x.category() < y.category();
  });
  if (out.empty()) {
    v1::CategoryScore cs;
    cs.set_category(C::TASK_CATEGORY_GENERAL);
    cs.set_score(1);
    out.push_back(cs);
  }
  return out;
}

// The text analysed: the last user message (else the last message), not copied.
const std::string& LastUserMessage(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return request.messages(i).content();
  }
  static const std::string* const kNone = new std::string();
  return request.messages().empty() ? *kNone : request.messages().rbegin()->content();
}

}  // namespace

std::array<double, 9> RequestAnalyzer::Score(const std::string& text) { return lexicon::Score(text); }

RequestAnalyzer::RequestAnalyzer(AnalyzerOptions options)
    : options_(options), model_(options.model ? *options.model : CategoryModel::Builtin()) {}

// An ask made of one instruction piece: the instruction (*instr) without what it carries after
// a colon (*payload), scored on its own instruction; the payload counts 0.3.
Ask RequestAnalyzer::InstructionAsk(const std::string& piece, std::string* instr,
                                    std::string* payload) const {
  Ask ask;
  ask.text = piece;
  SplitInstruction(piece, instr, payload);
  if (!payload->empty()) ask.text = std::string(absl::StripAsciiWhitespace(*instr));
  ask.scores = Score(*instr);
  if (!payload->empty()) {
    std::array<double, 9> p = Score(*payload);
    for (C c : kAllCategories) ask.scores[c] += 0.3 * p[c];
  }
  // The classifier reads the instruction (pasted material would decide what the ask is
  // "about": an explanation of pasted code is not code), with the lexicon's scores.
  if (!options_.lexicon_only) ask.probs = model_.Predict(*instr, ask.scores);
  return ask;
}

// Long on purpose: one pass over the pieces carries the state that decides what each one is
// (inside pasted material, an open list of aspects and its items, a list of material); split
// up, that state would be threaded through every part.
Analysis RequestAnalyzer::AnalyzeText(const std::string& text, int64_t max_output_tokens) const {
  return AnalyzeText(text, max_output_tokens, nullptr);
}

Analysis RequestAnalyzer::AnalyzeText(const std::string& text, int64_t max_output_tokens,
                                      const Prior* prior) const {
  Analysis a;
  // 1. Pieces: sentences, then connectors; mark instructions and context.
  std::vector<std::string> context;
  bool in_payload = false;
  // Score(text), when an ask turns out to be the whole text (one short question): the
  // single-ask verdict below scores the whole text and need not do it twice.
  WholeText whole;
  // An ask that introduces a list of aspects ("..., focusing on the following areas:") and the
  // asks made of its items (one per aspect, in its category). With two items or more they
  // replace it; a single item goes back to the context.
  int intro = -1;
  AspectIntro aspect;
  std::vector<std::pair<size_t, std::string>> items;  // ask index, item text
  int aspect_lists = 0;
  bool material_list = false;  // the last ask introduced a list of material (IntroducesMaterial)
  auto close_list = [&] {
    if (intro >= 0 && items.size() >= 2) {
      a.asks.erase(a.asks.begin() + intro);
      ++aspect_lists;
    } else if (intro >= 0 && items.size() == 1) {
      a.asks.erase(a.asks.begin() + static_cast<long>(items[0].first));
      context.push_back(items[0].second);
    }
    intro = -1;
    items.clear();
  };
  for (const auto& [sentence, middle] : WindowSentences(text)) {
    if (middle) {
      close_list();
      context.push_back(sentence);
      in_payload = true;
      continue;
    }
    const absl::string_view line = absl::StripTrailingAsciiWhitespace(sentence);
    const bool statement = !line.empty() && (line.back() == ';' || line.back() == '{');
    if (!a.asks.empty() && (statement || CodeSyntax(sentence, /*symbols_only=*/true) > 0)) {
      // A line of pasted code ("return 0;" has no symbol but ends as a statement): material for
      // the asks, never an ask itself.
      context.push_back(sentence);
      in_payload = true;
      continue;
    }
    for (const std::string& raw : SplitConnectors(sentence)) {
      Piece piece = Normalize(raw);
      if (piece.text.empty()) continue;
      if (material_list && piece.enumerated) {
        context.push_back(piece.text);  // an item to translate, classify, ...
        continue;
      }
      material_list = false;
      if (!a.asks.empty() && intro < 0 && IsConstraint(piece.text)) {
        // "Do not use a calculator." belongs to the ask before it.
        a.asks.back().text = absl::StrCat(a.asks.back().text, " ", piece.text);
        continue;
      }
      const bool instruction =
          IsInstruction(piece.text, /*strong_only=*/in_payload && !piece.explicit_separate);
      if (!instruction && intro >= 0 && piece.enumerated) {
        // An aspect of the introducing ask: "Evaluate X, focusing on" + "Communication".
        const Ask& head = a.asks[intro];
        Ask item = head;
        item.text = absl::StrCat(
            absl::StripTrailingAsciiWhitespace(head.text.substr(0, aspect.following)), " ",
            piece.text);
        item.explicit_separate = true;
        item.sequential = false;
        item.refers_back = false;
        items.emplace_back(a.asks.size(), piece.text);
        a.asks.push_back(std::move(item));
        continue;
      }
      close_list();
      if (!instruction) {
        context.push_back(piece.text);
        continue;
      }
      std::string instr, payload;
      Ask ask = InstructionAsk(piece.text, &instr, &payload);
      ask.explicit_separate = piece.explicit_separate;
      ask.sequential = piece.sequential;
      if (!payload.empty()) {
        in_payload = true;
        context.push_back(std::string(absl::StripAsciiWhitespace(payload)));
      } else if (instr == text) {
        whole.scores = ask.scores;
        if (!options_.lexicon_only) whole.probs = ask.probs;
      }
      ask.refers_back = !a.asks.empty() && HasAny(absl::AsciiStrToLower(instr), kBackReferences);
      if (payload.empty()) {
        aspect = FindAspectIntro(ask.text);
        if (aspect.phrase != std::string::npos) intro = static_cast<int>(a.asks.size());
        material_list = IntroducesMaterial(ask.text);
      }
      a.asks.push_back(std::move(ask));
    }
  }
  close_list();
  a.context = absl::StrJoin(context, " ");
  if (a.asks.empty()) {
    Ask only;
    only.text = text;
    only.scores = Score(text);
    whole.scores = only.scores;
    a.asks.push_back(only);
  }
  if (a.asks.size() == 1) return Decide(text, std::move(a), max_output_tokens, whole, prior);
  const int lexicon_decided = Categorize(&a);
  MergeAsks(&a);
  if (a.asks.size() == 1) return Decide(text, std::move(a), max_output_tokens, whole, prior);
  return Compile(text, std::move(a), max_output_tokens, aspect_lists, lexicon_decided);
}

// 2. Categories; asks without a signal lean on their neighbour. Returns how many asks the
// lexicon decided because the classifier was unsure of them.
int RequestAnalyzer::Categorize(Analysis* a) const {
  double top, second;
  int lexicon_decided = 0;
  for (Ask& ask : a->asks) {
    const C lexicon = TopCategory(ask.scores, options_.min_signal, &top, &second);
    ask.category = options_.lexicon_only ? lexicon : ask.probs.best();
    // The classifier learnt from whole prompts; on a short fragment of one it may be unsure
    // where the lexicon has a clear cue ("explain the differences" is comparison): then the
    // lexicon decides that ask.
    if (!options_.lexicon_only && a->asks.size() > 1 &&
        ask.probs.best_p() < options_.fragment_sure && top >= options_.min_signal &&
        lexicon != ask.category) {
      ask.category = lexicon;
      ++lexicon_decided;
    }
  }
  return lexicon_decided;
}

// 3. Merge adjacent asks of one category unless they were asked for separately; merge asks
// with no signal into the previous one unless separate; at most kMaxAsks remain.
void RequestAnalyzer::MergeAsks(Analysis* a) const {
  double top, second;
  std::vector<Ask> merged;
  for (Ask& ask : a->asks) {
    TopCategory(ask.scores, options_.min_signal, &top, &second);
    const bool no_signal = top < options_.min_signal;
    if (!merged.empty() && !ask.explicit_separate &&
        (ask.category == merged.back().category || no_signal)) {
      Ask& prev = merged.back();
      prev.text = absl::StrCat(prev.text, " ", ask.text);
      for (C c : kAllCategories) prev.scores[c] += ask.scores[c];
      continue;
    }
    merged.push_back(std::move(ask));
  }
  a->asks = std::move(merged);
  constexpr size_t kMaxAsks = 8;
  while (a->asks.size() > kMaxAsks) {
    Ask last = std::move(a->asks.back());
    a->asks.pop_back();
    a->asks.back().text = absl::StrCat(a->asks.back().text, " ", last.text);
  }
}

// 4 and 5. Several asks: compile, with whole-request category scores normalised (the
// classifier's mean over the asks, or the sum of their lexicon scores).
Analysis RequestAnalyzer::Compile(const std::string& text, Analysis a, int64_t max_output_tokens,
                                  int aspect_lists, int lexicon_decided) const {
  std::array<double, 9> total{};
  for (const Ask& ask : a.asks) {
    for (C c : kAllCategories) total[c] += options_.lexicon_only ? ask.scores[c] : ask.probs.of(c);
  }
  a.categories = RankedCategories(total, 0);
  a.estimated_tokens = CountTokens(text) + max_output_tokens * static_cast<int64_t>(a.asks.size());
  a.kind = v1::PLAN_KIND_COMPILED;
  std::vector<std::string> parts;
  for (const Ask& ask : a.asks) {
    parts.push_back(options_.lexicon_only
                        ? CategoryName(ask.category)
                        : absl::StrFormat("%s %.2f", CategoryName(ask.category), ask.probs.of(ask.category)));
  }
  if (aspect_lists > 0) {
    a.reasons.push_back("a listed aspect of an ask (\"focusing on the following ...\") is an ask of "
                        "its own");
  }
  a.reasons.push_back(absl::StrCat(
      a.asks.size(), " separate asks (", absl::StrJoin(parts, ", "),
      options_.lexicon_only ? ""
      : lexicon_decided    ? absl::StrCat("; classifier, the lexicon for ", lexicon_decided,
                                          " it was unsure of")
                           : "; classifier",
      "): compile into sub-tasks"));
  return a;
}

// One ask: the whole request goes to one model, or to several that compete.
Analysis RequestAnalyzer::Decide(const std::string& text, Analysis a, int64_t max_output_tokens,
                                 const WholeText& whole, const Prior* prior) const {
  a.estimated_tokens = CountTokens(text) + max_output_tokens;
  Ask& only = a.asks.front();
  // The whole request is scored (pasted code says what it is about).
  only.scores = whole.scores ? *whole.scores : Score(text);
  double top, second;
  const C lexicon_best = TopCategory(only.scores, options_.min_signal, &top, &second);
  int words = 0;  // runs of non-spaces; a vague request is short
  for (size_t i = 0; i < text.size() && words <= options_.vague_max_words; ++i) {
    words += text[i] != ' ' && (i == 0 || text[i - 1] == ' ');
  }
  // A short ask after an earlier user turn continues it: never vague, and read with it below.
  // An ask read with a prior continues a conversation or fills in a task: never vague.
  const bool with_prior = prior != nullptr && !options_.lexicon_only;
  const bool vague = !with_prior &&
      ((top < 2.0 && words <= options_.vague_max_words &&
       HasAny(absl::AsciiStrToLower(text), kVague)) ||
      (top < 1.0 && words <= 3 && std::all_of(text.begin(), text.end(), [](char c) {
         return static_cast<unsigned char>(c) < 0x80;
       })));
  if (options_.lexicon_only) {
    only.category = lexicon_best;
    a.categories = RankedCategories(only.scores, 0);
  } else {
    // Already known when one piece was the whole text (a one-sentence question).
    only.probs = whole.probs ? *whole.probs : model_.Predict(text, only.scores);
    if (with_prior) {
      // A follow-up counts as much as it is sure of itself: "now translate it into German"
      // keeps its own category, "make it shorter" takes the conversation's. Under a system
      // message that sets a task, the user's text is mostly its input ("Good morning" to a
      // translator), so it counts less the surer the task is.
      const CategoryProbs& before = prior->probs;
      float own = only.probs.best_p();
      if (prior->from_system) own *= 1 - before.best_p();
      for (size_t c = 0; c < only.probs.p.size(); ++c) {
        only.probs.p[c] = own * only.probs.p[c] + (1 - own) * before.p[c];
      }
      (prior->from_system ? a.system_task : a.follow_up) = true;
      const std::string there = absl::StrFormat("%s %.2f there", CategoryName(before.best()), before.best_p());
      a.reasons.push_back(prior->from_system
                              ? absl::StrCat("read with the task its system message sets (", there, ")")
                              : absl::StrCat("a short follow-up, read with the user's turn it continues (",
                                             there, ")"));
    }
    only.category = only.probs.best();
    std::array<double, 9> p{};
    for (C c : kAllCategories) p[c] = only.probs.of(c);
    a.categories = RankedCategories(p, 0.01);
  }
  if (options_.lexicon_only) {
    if (second >= options_.compete_min_score && second >= options_.compete_tie_ratio * top) {
      C runner_up = C::TASK_CATEGORY_GENERAL;
      for (C c : kAllCategories) {
        if (c != lexicon_best && only.scores[c] == second) runner_up = c;
      }
      a.kind = v1::PLAN_KIND_COMPETE;
      a.reasons.push_back(absl::StrFormat(
          "no category clearly ahead (%s %.1f vs %s %.1f): let several models compete",
          CategoryName(lexicon_best), top, CategoryName(runner_up), second));
      return a;
    }
  } else {
    const CategoryProbs& p = only.probs;
    if (p.second_p() >= options_.tie_min && p.margin() < options_.tie_margin) {
      a.kind = v1::PLAN_KIND_COMPETE;
      a.reasons.push_back(absl::StrFormat(
          "classifier: no category clearly ahead (%s %.2f vs %s %.2f): let several models compete",
          CategoryName(p.best()), p.best_p(), CategoryName(p.second()), p.second_p()));
      return a;
    }
  }
  if (vague) {
    a.kind = v1::PLAN_KIND_COMPETE;
    a.reasons.push_back("short, open-ended request with no clear skill: let several models compete");
    return a;
  }
  a.kind = v1::PLAN_KIND_PASSTHROUGH;
  if (options_.lexicon_only) {
    if (top < options_.min_signal) {
      a.reasons.push_back("a single request with no specific skill: one general model answers");
    } else {
      a.reasons.push_back(absl::StrFormat("a single %s request (score %.1f, next %.1f): one model answers",
                                          CategoryName(lexicon_best), top, second));
    }
    return a;
  }
  const CategoryProbs& p = only.probs;
  if (p.best_p() < options_.unsure_below) {
    only.category = C::TASK_CATEGORY_GENERAL;
    a.reasons.push_back(absl::StrFormat(
        "classifier unsure (best %s %.2f < %.2f, entropy %.1f bits): one general model answers",
        CategoryName(p.best()), p.best_p(), options_.unsure_below, p.entropy()));
    return a;
  }
  a.reasons.push_back(absl::StrFormat(
      "a single %s request (classifier %.2f, next %s %.2f): one model answers",
      CategoryName(p.best()), p.best_p(), CategoryName(p.second()), p.second_p()));
  return a;
}

std::optional<CategoryProbs> RequestAnalyzer::SystemTask(const v1::CompleteRequest& request) const {
  // The system messages, joined when there are several (one, the common case, is not copied).
  std::vector<const std::string*> parts;
  for (const auto& m : request.messages()) {
    if (m.role() == "system" && !m.content().empty()) parts.push_back(&m.content());
  }
  if (parts.empty()) return std::nullopt;
  std::string joined;
  for (size_t i = 0; parts.size() > 1 && i < parts.size(); ++i) {
    absl::StrAppend(&joined, i == 0 ? "" : "\n", *parts[i]);
  }
  const std::string& system = parts.size() == 1 ? *parts[0] : joined;
  const std::array<double, 9> cues = Score(system);
  const CategoryProbs p = model_.Predict(system, cues);
  double top, second;
  const C cue = TopCategory(cues, options_.min_signal, &top, &second);
  if (p.best() == v1::TASK_CATEGORY_GENERAL || p.best_p() < options_.system_task_sure ||
      cue != p.best() || top < options_.system_task_min_cue) {
    return std::nullopt;
  }
  return p;
}

std::optional<CategoryProbs> RequestAnalyzer::TopicBefore(const v1::CompleteRequest& request,
                                                         const std::string& ask) const {
  std::vector<const std::string*> turns;  // the user's, before the ask
  for (const auto& m : request.messages()) {
    if (&m.content() == &ask) break;
    if (m.role() == "user") turns.push_back(&m.content());
  }
  std::optional<CategoryProbs> latest;
  constexpr size_t kLookBack = 8;  // bounds the work on a long conversation of short turns
  for (size_t back = 0; back < turns.size() && back < kLookBack; ++back) {
    const std::string& turn = *turns[turns.size() - 1 - back];
    CategoryProbs p = model_.Predict(turn, Score(turn));
    if (p.best() != v1::TASK_CATEGORY_GENERAL && p.best_p() >= options_.unsure_below) return p;
    if (!latest) latest = p;
  }
  return latest;
}

Analysis RequestAnalyzer::Analyze(const v1::CompleteRequest& request,
                                  int64_t max_output_tokens) const {
  const std::string& last = LastUserMessage(request);
  std::optional<Prior> prior;
  if (!options_.lexicon_only && CountTokens(last) <= options_.follow_up_max_tokens) {
    if (auto turn = TopicBefore(request, last)) prior = Prior{*turn, /*from_system=*/false};
  }
  if (!prior && !options_.lexicon_only) {
    if (auto task = SystemTask(request)) prior = Prior{*task, /*from_system=*/true};
  }
  Analysis a = AnalyzeText(last, max_output_tokens, prior ? &*prior : nullptr);
  // The earlier messages are input too (the last one is counted by AnalyzeText).
  int64_t history = 0;  // the conversation's turns before the ask
  bool before_ask = true;
  for (const auto& m : request.messages()) {
    if (&m.content() == &last) {
      before_ask = false;
      continue;
    }
    const int64_t tokens = CountTokens(m.content());
    a.estimated_tokens += tokens;
    if (before_ask && m.role() != "system") history += tokens;
  }
  if (a.kind == v1::PLAN_KIND_COMPILED && history > options_.max_compiled_history_tokens) {
    a.kind = v1::PLAN_KIND_PASSTHROUGH;
    a.reasons.push_back(absl::StrCat(
        "a conversation of ", history, " tokens before this ask goes whole to one model (every part "
        "of a compiled plan would be sent it; the limit is ", options_.max_compiled_history_tokens, ")"));
  }
  if (request.mode() != v1::PLAN_KIND_UNSPECIFIED) {
    a.reasons.insert(a.reasons.begin(),
                     absl::StrCat("the client asked for plan kind ",
                                  absl::AsciiStrToLower(absl::StripPrefix(
                                      v1::PlanKind_Name(request.mode()), "PLAN_KIND_"))));
    a.kind = request.mode();
  } else if (!request.model().empty() || !request.family().empty()) {
    a.reasons.insert(a.reasons.begin(),
                     absl::StrCat("the client pinned ",
                                  request.model().empty() ? "family " + request.family()
                                                          : "model " + request.model(),
                                  ": passthrough"));
    a.kind = v1::PLAN_KIND_PASSTHROUGH;
  }
  return a;
}

}  // namespace loom
