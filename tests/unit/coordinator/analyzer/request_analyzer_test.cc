#include "coordinator/analyzer/request_analyzer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RequestAnalyzerTest, WorkedExampleCompilesIntoCodeThenDependentReasoning) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Translate this Python code to Rust and explain the key differences between the two "
      "implementations.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(a.asks.size(), 2u);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(a.asks[1].category, v1::TASK_CATEGORY_REASONING);
  EXPECT_TRUE(a.asks[1].refers_back);
  EXPECT_THAT(a.reasons[0], HasSubstr("separate asks"));
}

TEST(RequestAnalyzerTest, CodeTranslationIsCodeAndNaturalTranslationIsTranslation) {
  RequestAnalyzer analyzer;
  EXPECT_EQ(analyzer.AnalyzeText("Translate this Java class to Kotlin").asks[0].category,
            v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(analyzer.AnalyzeText("Translate this letter into French").asks[0].category,
            v1::TASK_CATEGORY_TRANSLATION);
}

TEST(RequestAnalyzerTest, SingleTopicPassesThrough) {
  Analysis a = RequestAnalyzer().AnalyzeText("What is the capital of Australia?");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_FACTUAL);
  EXPECT_THAT(a.reasons[0], HasSubstr("factual"));
}

TEST(RequestAnalyzerTest, PastedMaterialDoesNotBecomeAsks) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Give me a TL;DR of this email: Hi team, the release is delayed. Please prioritize fixes "
      "and update the tracker.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_SUMMARIZATION);
  EXPECT_THAT(a.context, HasSubstr("release is delayed"));
}

TEST(RequestAnalyzerTest, ALongDocumentThenOneClosingInstructionIsOneTask) {
  std::string text = "Minutes of the facilities committee\n";
  for (int i = 0; i < 30; ++i) {
    text += "Item " + std::to_string(i) +
            ": the committee reviewed the heating contract, asked for two more quotes and agreed "
            "to meet again.\n";
  }
  text += "Summarize the above for the board in five bullet points, keeping every figure and the "
          "names of the people who own each action, and leave out the small talk.";
  Analysis a = RequestAnalyzer().AnalyzeText(text);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  ASSERT_EQ(a.asks.size(), 1u);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_SUMMARIZATION);
}

TEST(RequestAnalyzerTest, StepsAreFoundInOtherLanguagesToo) {
  RequestAnalyzer analyzer;
  auto kinds = [&](const std::string& text) {
    Analysis a = analyzer.AnalyzeText(text);
    std::vector<std::string> cats;
    for (const Ask& ask : a.asks) cats.push_back(CategoryName(ask.category));
    return std::make_pair(a.kind, absl::StrJoin(cats, ","));
  };
  // Connectors: French "puis", Russian "а потом", Chinese "，然后"; a capital Cyrillic verb.
  auto fr = kinds("Traduis ce paragraphe en anglais, puis résume-le en une phrase : Le conseil "
                  "municipal a voté hier un nouveau budget pour les écoles.");
  EXPECT_EQ(fr.first, v1::PLAN_KIND_COMPILED) << fr.second;
  EXPECT_EQ(fr.second, "translation,summarization");
  EXPECT_EQ(kinds("Объясни, что такое рекурсия, а потом напиши пример на Python.").first,
            v1::PLAN_KIND_COMPILED);
  auto zh = kinds("写一首关于秋天的短诗，然后把它翻译成英文。");
  EXPECT_EQ(zh.first, v1::PLAN_KIND_COMPILED) << zh.second;
  EXPECT_EQ(zh.second, "creative,translation");
  // Japanese: a te-form clause, "、次に", and a request followed by its material.
  auto ja = kinds("まずこの文章を要約して、次に英語に翻訳してください。今日は雨なので、試合は延期になりました。");
  EXPECT_EQ(ja.first, v1::PLAN_KIND_COMPILED) << ja.second;
  EXPECT_EQ(ja.second, "summarization,translation");
  EXPECT_EQ(kinds("次の文章を英語に翻訳してください。今日は雨なので、試合は延期になりました。").first,
            v1::PLAN_KIND_PASSTHROUGH);
  // An imperative with its pronoun attached ("traducila": translate it) is still a verb.
  EXPECT_EQ(kinds("Scrivi una breve storia su un gatto e poi traducila in inglese.").first,
            v1::PLAN_KIND_COMPILED);
  // A Chinese question pasted after an instruction is its material, not a second ask.
  EXPECT_EQ(kinds("回答以下问题。\n你最喜欢的旅行目的地是哪里？为什么？").first,
            v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(kinds("Erkläre mir bitte, wie ein Kühlschrank funktioniert.").first,
            v1::PLAN_KIND_PASSTHROUGH);
}

TEST(RequestAnalyzerTest, AStatementOfPastedCodeIsNotAnAsk) {
  // "return 0;" starts with an instruction verb and has no code symbol, but ends as a statement.
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Write a CMakeLists.txt for this program\n#include <iostream>\nint main() {\n"
      "  std::cout << \"hi\";\n  return 0;\n}");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  ASSERT_EQ(a.asks.size(), 1u);
  EXPECT_THAT(a.context, HasSubstr("return 0;"));
}

TEST(RequestAnalyzerTest, EnumeratedAsksOfOneSkillStillCompile) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Write a Python function to parse a CSV file. Then write unit tests for it.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(a.asks.size(), 2u);
  EXPECT_TRUE(a.asks[1].sequential);
}

// Written in voices other than the BiGGen prompts the rule was first seen on.
TEST(RequestAnalyzerTest, EachListedAspectOfAnAskIsAnAskOfItsOwn) {
  RequestAnalyzer analyzer;
  for (const char* text : {
           "Discuss the rise of remote work, with attention to the following points:\n- "
           "productivity\n- housing markets\n- city centres",  // not a listed phrase: no split
           "write an essay on remote work covering the following topics:\n\xe2\x80\xa2 commuting\n"
           "\xe2\x80\xa2 office rents\n\xe2\x80\xa2 hiring across borders",
           "Compare Postgres and MySQL, focusing on the following aspects:\n1) Replication\n2) "
           "JSON support"}) {
    Analysis a = analyzer.AnalyzeText(text);
    SCOPED_TRACE(text);
    if (absl::StrContains(text, "attention to")) {
      EXPECT_NE(a.kind, v1::PLAN_KIND_COMPILED);
      continue;
    }
    EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
    ASSERT_GE(a.asks.size(), 2u);
    for (const Ask& ask : a.asks) {
      EXPECT_EQ(ask.category, a.asks[0].category) << "every aspect in the ask's category";
      EXPECT_TRUE(ask.explicit_separate);
    }
    EXPECT_THAT(a.asks[0].text, ::testing::AnyOf(HasSubstr("covering commuting"),
                                                 HasSubstr("focusing on Replication")));
    EXPECT_THAT(absl::StrJoin(a.reasons, " | "), HasSubstr("listed aspect"));
  }
  // A list that is material to work on is not a list of aspects.
  for (const char* text : {"Summarize the following points:\n1. Sales rose 4%\n2. Costs fell",
                           "Translate the following sentences into German:\n1. Good morning\n2. "
                           "Where is the station?",
                           "Explain the difference, focusing on the following area:\n1. Cost"}) {
    SCOPED_TRACE(text);
    Analysis a = analyzer.AnalyzeText(text);
    EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH) << absl::StrJoin(a.reasons, " | ");
    EXPECT_THAT(a.context, ::testing::Not(::testing::IsEmpty()));
  }
}

TEST(RequestAnalyzerTest, AStepAfterAnotherIsAnAskOfItsOwn) {
  RequestAnalyzer analyzer;
  Analysis a = analyzer.AnalyzeText(
      "Sort these cities by population. Once they are sorted, calculate the average of the top "
      "three.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(a.asks.size(), 2u);
  EXPECT_TRUE(a.asks[1].sequential);
  EXPECT_THAT(a.asks[1].text, ::testing::StartsWith("calculate"));
  a = analyzer.AnalyzeText("Write a riddle about the moon. Give the solution afterwards.");
  ASSERT_EQ(a.asks.size(), 2u) << absl::StrJoin(a.reasons, " | ");
  EXPECT_TRUE(a.asks[1].sequential);
  // A clause that is not followed by an instruction stays as it was.
  a = analyzer.AnalyzeText("When I was young, my town had a cinema. What happened to cinemas?");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
}

TEST(RequestAnalyzerTest, AConstraintBelongsToTheAskBeforeIt) {
  RequestAnalyzer analyzer;
  for (const char* text : {"If 3x + 5 = 20, what is x? Don't use Python or a calculator.",
                           "Explain how vaccines train the immune system. Avoid jargon, please.",
                           "Write a limerick about a cat. Keep it under 50 words."}) {
    SCOPED_TRACE(text);
    Analysis a = analyzer.AnalyzeText(text);
    EXPECT_NE(a.kind, v1::PLAN_KIND_COMPILED) << absl::StrJoin(a.reasons, " | ");
    ASSERT_EQ(a.asks.size(), 1u);
  }
  Analysis a = analyzer.AnalyzeText("Sort these numbers: 4, 1, 3. Do not explain, just sort.");
  ASSERT_EQ(a.asks.size(), 1u);
  EXPECT_THAT(a.asks[0].text, HasSubstr("Do not explain"));
}

TEST(RequestAnalyzerTest, VagueRequestsCompete) {
  EXPECT_EQ(RequestAnalyzer().AnalyzeText("Surprise me.").kind, v1::PLAN_KIND_COMPETE);
}

TEST(RequestAnalyzerTest, ForcedModeAndPinnedModelWin) {
  v1::CompleteRequest r;
  auto* m = r.add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  r.set_mode(v1::PLAN_KIND_COMPETE);
  Analysis a = RequestAnalyzer().Analyze(r);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPETE);
  EXPECT_THAT(a.reasons[0], HasSubstr("asked for plan kind compete"));
  r.set_mode(v1::PLAN_KIND_UNSPECIFIED);
  m->set_content("Write a poem. Then translate it into German.");
  r.set_family("llama");
  a = RequestAnalyzer().Analyze(r);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_THAT(a.reasons[0], HasSubstr("pinned family llama"));
}

TEST(RequestAnalyzerTest, EstimatesTokensFromPromptAndOutput) {
  Analysis a = RequestAnalyzer().AnalyzeText("hello world", 100);
  EXPECT_EQ(a.estimated_tokens, 2 + 100);
}

TEST(RequestAnalyzerTest, IsDeterministic) {
  RequestAnalyzer analyzer;
  const std::string text = "Summarize this and translate it into Spanish: the sky is blue.";
  Analysis a = analyzer.AnalyzeText(text), b = analyzer.AnalyzeText(text);
  ASSERT_EQ(a.asks.size(), b.asks.size());
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.reasons, b.reasons);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A request of these (role, content) messages.
v1::CompleteRequest Messages(std::initializer_list<std::pair<std::string, std::string>> messages) {
  v1::CompleteRequest r;
  for (const auto& [role, text] : messages) {
    auto* m = r.add_messages();
    m->set_role(role);
    m->set_content(text);
  }
  return r;
}

// A conversation: earlier turns, then a two-part ask.
v1::CompleteRequest Conversation(int history_words, v1::PlanKind mode = v1::PLAN_KIND_UNSPECIFIED) {
  v1::CompleteRequest r;
  r.set_mode(mode);
  auto add = [&](const std::string& role, const std::string& text) {
    auto* m = r.add_messages();
    m->set_role(role);
    m->set_content(text);
  };
  add("system", "You are a careful engineer.");
  std::string earlier;
  for (int i = 0; i < history_words; ++i) earlier += "word ";
  add("user", "Here is my code: " + earlier);
  add("assistant", "Thanks, I have read it.");
  add("user", "Translate this Python code to Rust and explain the key differences between the two "
              "implementations.");
  return r;
}

TEST(RequestAnalyzerTest, AShortConversationStillCompilesItsAsk) {
  Analysis a = RequestAnalyzer().Analyze(Conversation(50));
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
}

TEST(RequestAnalyzerTest, ALongConversationGoesWholeToOneModelUnlessTheClientAsksToCompile) {
  RequestAnalyzer analyzer(AnalyzerOptions{.max_compiled_history_tokens = 200});
  Analysis a = analyzer.Analyze(Conversation(2000));
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), HasSubstr("goes whole to one model"));
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), HasSubstr("the limit is 200"));
  // The system message does not count as conversation: a long one alone changes nothing.
  v1::CompleteRequest long_system = Conversation(0);
  long_system.mutable_messages(0)->set_content(std::string(20000, 'x'));
  EXPECT_EQ(analyzer.Analyze(long_system).kind, v1::PLAN_KIND_COMPILED);
  // Asked for by the client, the plan is compiled all the same.
  EXPECT_EQ(analyzer.Analyze(Conversation(2000, v1::PLAN_KIND_COMPILED)).kind, v1::PLAN_KIND_COMPILED);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

v1::CompleteRequest FollowUp(const std::string& before, const std::string& ask) {
  return Messages({{"user", before}, {"assistant", "Here you go."}, {"user", ask}});
}

TEST(RequestAnalyzerTest, AShortFollowUpIsReadWithTheTurnBeforeIt) {
  RequestAnalyzer analyzer;
  const v1::CompleteRequest r =
      FollowUp("Write a Python function that removes duplicates from a list.", "can you make it faster");
  Analysis a = analyzer.Analyze(r);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  ASSERT_EQ(a.asks.size(), 1u);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_CODE);
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), HasSubstr("short follow-up"));
  EXPECT_TRUE(a.follow_up);
  // Alone it is not code; and with the reading turned off it is read alone again.
  EXPECT_NE(analyzer.AnalyzeText("can you make it faster").asks[0].category, v1::TASK_CATEGORY_CODE);
  RequestAnalyzer off(AnalyzerOptions{.follow_up_max_tokens = 0});
  EXPECT_NE(off.Analyze(r).asks[0].category, v1::TASK_CATEGORY_CODE);
}

TEST(RequestAnalyzerTest, AChainOfFollowUpsKeepsTheTurnThatStartedIt) {
  v1::CompleteRequest r = FollowUp("Write a Python function that removes duplicates from a list.",
                                   "thanks, that looks great!");
  const v1::CompleteRequest more = Messages({{"assistant", "Here it is."}, {"user", "why?"}});
  for (const auto& m : more.messages()) *r.add_messages() = m;
  Analysis a = RequestAnalyzer().Analyze(r);
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), HasSubstr("(code "));  // the first turn was read
}

TEST(RequestAnalyzerTest, AFollowUpSureOfItsOwnSkillKeepsIt) {
  Analysis a = RequestAnalyzer().Analyze(
      FollowUp("Write a short poem about autumn leaves.", "now translate it into German"));
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_TRANSLATION);
}

TEST(RequestAnalyzerTest, ALongAskAfterAnEarlierTurnIsReadOnItsOwn) {
  const std::string ask =
      "Write a Python function that parses an ISO 8601 date string, returns a datetime in UTC, and "
      "raises a clear ValueError for every malformed input, with doctests.";
  Analysis a = RequestAnalyzer().Analyze(FollowUp("What is the capital of Peru?", ask));
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_CODE);
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), Not(HasSubstr("follow-up")));
  EXPECT_FALSE(a.follow_up);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

v1::CompleteRequest WithSystem(const std::string& system, const std::string& ask) {
  return Messages({{"system", system}, {"user", ask}});
}

TEST(RequestAnalyzerTest, ASystemMessageThatSetsTheTaskDecidesWhatTheUsersTextIs) {
  RequestAnalyzer analyzer;
  Analysis a = analyzer.Analyze(WithSystem(
      "You are a translator. Translate everything the user writes into French. Output only the "
      "translation.",
      "Good morning, how are you today?"));
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_TRANSLATION);
  EXPECT_TRUE(a.system_task);
  EXPECT_THAT(absl::StrJoin(a.reasons, "; "), HasSubstr("task its system message sets"));
  EXPECT_NE(analyzer.AnalyzeText("Good morning, how are you today?").categories[0].category(),
            v1::TASK_CATEGORY_TRANSLATION);
}

TEST(RequestAnalyzerTest, AGenericSystemMessageChangesNothing) {
  RequestAnalyzer analyzer;
  for (const std::string ask : {"Write a poem about the sea.", "What is the capital of Peru?",
                                "Solve 3x + 5 = 20."}) {
    Analysis plain = analyzer.AnalyzeText(ask);
    Analysis a = analyzer.Analyze(WithSystem("You are a helpful assistant.", ask));
    EXPECT_EQ(a.categories[0].category(), plain.categories[0].category()) << ask;
    EXPECT_FALSE(a.system_task) << ask;
  }
}

}  // namespace
}  // namespace loom
