#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/analyzer.h"
#include "pipeline/model.h"

using namespace triage;
using namespace triage::pipeline;
namespace fs = std::filesystem;

namespace {
const fs::path kBundle = TRIAGE_TEST_BUNDLE;

fs::path copy_bundle(const std::string& name) {
    fs::path dst = fs::temp_directory_path() / ("triage-bundle-" + name);
    fs::remove_all(dst);
    fs::copy(kBundle, dst);
    return dst;
}

const Model& shared_model() {
    static auto model = Model::load(kBundle.string(), "cpu");
    EXPECT_TRUE(model) << (model ? "" : model.error().message);
    return *model.value();
}
}  // namespace

TEST(Model, LoadsAndValidatesTheTestBundle) {
    const Model& model = shared_model();
    const Manifest& m = model.manifest();
    EXPECT_EQ(m.input_size, 256);
    EXPECT_EQ(m.mask_size, 128);
    EXPECT_EQ(m.labels.size(), 6u);
    EXPECT_EQ(m.labels[0].text, "liver tumor");
    EXPECT_EQ(m.labels[0].region.value, "10200004");
    EXPECT_EQ(m.labels[0].region.scheme, "SCT");
    EXPECT_EQ(m.sha256.size(), 64u);
    EXPECT_EQ(model.device_name(), "cpu");
    EXPECT_EQ(m.host_organs.at("pancreas tumor"), "pancreas");
    EXPECT_GT(m.roi_box_value, 1.0);  // outside the preprocessed CT range
    EXPECT_TRUE(m.prompts.count("description"));
}

TEST(Model, ManifestTasksNeedWhatTheyUse) {
    std::ifstream in(kBundle / "model.json"), tok(kBundle / "tokenizer.json");
    std::string text((std::istreambuf_iterator<char>(in)), {}), tokenizer((std::istreambuf_iterator<char>(tok)), {});
    auto without = [&](const std::string& key) {
        std::string t = text;
        auto p = t.find("\"" + key + "\"");
        t.replace(p, key.size() + 2, "\"unused_" + key + "\"");
        return parse_manifest(t, tokenizer);
    };
    auto r = without("roi_box_value");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("roi_box_value"), std::string::npos) << r.error().message;
    r = without("referring");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("host_organs"), std::string::npos) << r.error().message;
    std::string negative = text;
    negative.replace(negative.find("\"propagate_slices\": 2"), 21, "\"propagate_slices\": -1");
    r = parse_manifest(negative, tokenizer);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("propagate_slices"), std::string::npos) << r.error().message;
    for (const char* key : {"min_host_contrast_hu", "host_min_lead", "host_border_coverage", "density_tolerance_hu"}) {  // thresholds that must not be negative
        nlohmann::json j = nlohmann::json::parse(text);
        j["thresholds"][key] = -1;
        r = parse_manifest(j.dump(), tokenizer);
        ASSERT_FALSE(r) << key;
        EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
    }
    nlohmann::json share = nlohmann::json::parse(text);
    share["thresholds"]["host_min_share"] = {{"liver tumor", 1.5}};
    r = parse_manifest(share.dump(), tokenizer);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("host_min_share.liver tumor"), std::string::npos) << r.error().message;
    nlohmann::json density = nlohmann::json::parse(text);
    ASSERT_TRUE(density.contains("host_density"));  // PHANTOMS.md's table, written by export.py
    density["host_density"]["liver tumor"]["organ_hu"] = {65, 55};
    r = parse_manifest(density.dump(), tokenizer);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("host_density.liver tumor"), std::string::npos) << r.error().message;
    density["host_density"]["liver tumor"]["organ_hu"] = {55, 65};
    density["host_density"]["liver tumor"]["contrast_hu"] = nlohmann::json::array();
    r = parse_manifest(density.dump(), tokenizer);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("host_density.liver tumor.contrast_hu"), std::string::npos) << r.error().message;
    nlohmann::json sweep = nlohmann::json::parse(text);
    ASSERT_TRUE(sweep.contains("referring_sweep"));
    sweep["referring_sweep"]["ABDOMEN"].push_back("spleen tumor");  // not one of the labels
    r = parse_manifest(sweep.dump(), tokenizer);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("referring_sweep.ABDOMEN"), std::string::npos) << r.error().message;
}

TEST(Model, RunGivesOneAnswerPerSliceWithMasksOfTheManifestSize) {
    const Model& model = shared_model();
    const int s = model.manifest().input_size;
    std::vector<float> images(static_cast<size_t>(3) * s * s, 0.3f);
    StageSeconds st;
    auto answers = model.run(images, 3, model.manifest().prompts.at("recognition").front(), &st);
    ASSERT_TRUE(answers) << answers.error().message;
    ASSERT_EQ(answers->size(), 3u);
    for (const auto& a : answers.value())
        for (const auto& [label, logits] : a.masks) EXPECT_EQ(logits.size(), size_t(128 * 128));
    EXPECT_GT(st.vision, 0);
    EXPECT_FALSE(model.run(images, 2, "x"));  // buffer does not match the count
}

TEST(Model, CorruptMissingOrMismatchedFilesAreNamedInTheError) {
    auto corrupt = copy_bundle("corrupt");
    std::ofstream(corrupt / "mask_decoder.pt", std::ios::trunc) << "not a model";
    auto r = Model::load(corrupt.string(), "cpu");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("mask_decoder.pt"), std::string::npos) << r.error().message;

    auto missing = copy_bundle("missing");
    fs::remove(missing / "vision_encoder.pt");
    r = Model::load(missing.string(), "cpu");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("vision_encoder.pt"), std::string::npos) << r.error().message;

    auto badjson = copy_bundle("badjson");
    std::ofstream(badjson / "model.json", std::ios::trunc) << "{\"name\": 1}";
    r = Model::load(badjson.string(), "cpu");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("model.json"), std::string::npos) << r.error().message;
    EXPECT_FALSE(Model::load("/nonexistent/bundle", "cpu"));
    EXPECT_FALSE(Model::load(kBundle.string(), "cuda:7"));  // no GPU here (or not that one)
    for (const auto& d : {corrupt, missing, badjson}) fs::remove_all(d);
}

TEST(Model, SegLabelsAreParsedInOrder) {
    // The mini model's word answers and the released model's sentences parse alike.
    EXPECT_EQ(parse_seg_labels("It is [SEG] . liver tumor , [SEG] . kidney tumor"),
              (std::vector<std::string>{"liver tumor", "kidney tumor"}));
    EXPECT_EQ(parse_seg_labels("It is [SEG] ."), (std::vector<std::string>{""}));
    EXPECT_TRUE(parse_seg_labels("No findings").empty());
    EXPECT_EQ(parse_seg_labels("It is [SEG]. Liver tumor."), (std::vector<std::string>{"Liver tumor"}));
    EXPECT_EQ(parse_seg_labels("[SEG]. pneumothorax."), (std::vector<std::string>{"pneumothorax"}));
    EXPECT_EQ(parse_seg_labels("It is [SEG]. lung nodule; [SEG]. a mass in the left lung\nmore"),
              (std::vector<std::string>{"lung nodule", "a mass in the left lung"}));
    EXPECT_EQ(parse_seg_labels("[SEG][SEG] x"), (std::vector<std::string>{"", "x"}));
}

TEST(Analyzer, WindowsAndReportFollowTheManifest) {
    const Manifest& m = shared_model().manifest();
    core::Volume v;
    v.modality = "CT";
    v.body_part = "CHEST";
    EXPECT_EQ(ct_window(m, v), std::make_pair(-1000.0, 500.0));
    v.body_part = "";
    v.series_description = "Thorax 1.0 B70f";
    EXPECT_EQ(ct_window(m, v), std::make_pair(-1000.0, 500.0));
    v.series_description = "ABDOMEN axial";
    EXPECT_EQ(ct_window(m, v), std::make_pair(-175.0, 250.0));
    EXPECT_EQ(body_region(m, v), "ABDOMEN");  // the region whose labels referring_sweep asks for
    v.modality = "MR";
    EXPECT_EQ(body_region(m, v), "MR");
    v.modality = "CT";
    auto none = compose_report({}, "ABDOMEN", m);
    EXPECT_EQ(none.findings, "No findings in the examined abdomen.");
    core::SeriesAnalysis s;
    core::Finding f;
    f.label = "liver tumor";
    f.diameter_mm = 31;
    f.description = "Liver tumor: hypodense lesion in the right hepatic lobe, 31 mm (volume 12.0 mL), slices 3-9.";
    s.findings.push_back(f);
    auto one = compose_report({s}, "ABDOMEN", m);
    EXPECT_NE(one.impression.find("liver tumor 31 mm"), std::string::npos) << one.impression;
}

TEST(Analyzer, AnalyzesAVolumeEndToEndOnTheNativeGrid) {
    core::Volume v;
    v.modality = "CT";
    v.series_uid = "1.2.3";
    v.columns = v.rows = 64;
    v.slices = 3;
    v.slice_spacing = 2.5;
    v.column_spacing = v.row_spacing = 0.7;
    v.voxels.assign(size_t(3) * 64 * 64, 40.0f);
    for (int z = 0; z < 3; ++z) v.sources.push_back({"1.2.3." + std::to_string(z), "1.2.840.10008.5.1.4.1.1.2", 0, {0, 0, 2.5 * z}});
    Analyzer a(shared_model(), 2);
    auto r = a.analyze(v);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->slice_texts.size(), 3u);
    EXPECT_EQ(r->segments.size(), v.voxels.size());
    const Manifest& m = shared_model().manifest();
    for (const auto& f : r->findings) {  // every finding spans the slices its class's smallest size covers
        const int span = f.last_slice - f.first_slice + 1;
        EXPECT_GE(span, m.min_slices);
        if (m.min_diameter_mm.count(f.label)) {
            EXPECT_GE(span, static_cast<int>(m.min_diameter_mm.at(f.label) / v.slice_spacing));
        }
    }
}

/// Two uniform slices (0.3 and 0.7) at the model's input size.
static std::vector<float> two_slices(const Manifest& m) {
    const size_t plane = static_cast<size_t>(m.input_size) * m.input_size;
    std::vector<float> images(2 * plane, 0.3f);
    std::fill(images.begin() + static_cast<long>(plane), images.end(), 0.7f);
    return images;
}

TEST(Model, SegmentDecodesEachSliceWithItsOwnPrompt) {
    const Model& model = shared_model();
    const Manifest& m = model.manifest();
    const int s = m.input_size;
    const std::vector<float> images = two_slices(m);
    auto answers = model.run(images, 2, m.prompts.at("recognition").front());
    ASSERT_TRUE(answers) << answers.error().message;
    // A prompt of zero weights and bias b decodes to b everywhere (mask decoder: w . pixels + b).
    std::vector<float> zero(33, 0.0f), two = zero;  // the mini architecture's prompt: 32 weights + bias
    two.back() = 2.0f;
    auto masks = model.segment(images, 2, {zero, two});
    ASSERT_TRUE(masks) << masks.error().message;
    ASSERT_EQ(masks->size(), 2u);
    for (float x : masks.value()[0]) EXPECT_FLOAT_EQ(x, 0.0f);
    for (float x : masks.value()[1]) EXPECT_FLOAT_EQ(x, 2.0f);
    // A slice's own [SEG] prompt reproduces the mask the recognition answer carried.
    for (int b = 0; b < 2; ++b) {
        const SliceAnswer& a = answers.value()[static_cast<size_t>(b)];
        ASSERT_EQ(a.prompts.size(), a.masks.size());
        for (size_t i = 0; i < a.prompts.size(); ++i) {
            std::vector<float> one(images.begin() + static_cast<long>(b) * s * s, images.begin() + static_cast<long>(b + 1) * s * s);
            auto again = model.segment(one, 1, {a.prompts[i]});
            ASSERT_TRUE(again) << again.error().message;
            for (size_t p = 0; p < again->front().size(); ++p) ASSERT_NEAR(again->front()[p], a.masks[i].second[p], 1e-4);
        }
    }
    EXPECT_FALSE(model.segment(images, 2, {zero}));  // one prompt per slice
    // Several prompts on one slice (each slice encoded once): the same masks as one prompt per slice.
    for (int b = 0; b < 2; ++b) {
        const SliceAnswer& a = answers.value()[static_cast<size_t>(b)];
        if (a.prompts.empty()) continue;
        auto shared = model.segment(images, 2, {a.prompts[0], two, a.prompts[0]}, nullptr, {b, b, 1 - b});
        ASSERT_TRUE(shared) << shared.error().message;
        ASSERT_EQ(shared->size(), 3u);
        for (size_t p = 0; p < shared->front().size(); ++p) ASSERT_NEAR(shared->front()[p], a.masks[0].second[p], 1e-4);
        for (float x : shared.value()[1]) EXPECT_FLOAT_EQ(x, 2.0f);
    }
    EXPECT_FALSE(model.segment(images, 2, {zero, two}, nullptr, {0, 2}));  // no third slice
    EXPECT_FALSE(model.segment(images, 2, {zero, two}, nullptr, {0}));     // one index per prompt
}

TEST(Model, FeatureCacheReusesTheAnswersEncodingsWithTheSameMasks) {
    const Model& model = shared_model();
    const Manifest& m = model.manifest();
    const std::vector<float> images = two_slices(m);
    std::vector<float> weights(33, 0.0f);  // a prompt that shows the features: w . pixels + b
    for (size_t i = 0; i < 32; ++i) weights[i] = 0.1f * static_cast<float>(i % 5) - 0.2f;
    auto plain = model.segment(images, 2, {weights, weights});
    ASSERT_TRUE(plain) << plain.error().message;

    FeatureCache cache(size_t{64} << 20);
    ASSERT_TRUE(model.run_prompts(images, 2, {m.prompts.at("recognition").front()}, nullptr, {}, &cache, {10, 11}));
    EXPECT_GT(cache.bytes(), 0u);
    EXPECT_EQ(cache.reused(), 0u);
    const size_t both = cache.bytes();
    // Slices 10 and 11 from the cache: not encoded again, the same masks.
    auto cached = model.segment(images, 2, {weights, weights}, nullptr, {}, &cache, {10, 11});
    ASSERT_TRUE(cached) << cached.error().message;
    EXPECT_EQ(cache.reused(), 2u);
    for (size_t k = 0; k < 2; ++k)
        for (size_t p = 0; p < plain->at(k).size(); ++p) ASSERT_NEAR(cached->at(k)[p], plain->at(k)[p], 1e-4);
    // One slice held (11, the first image here), one new (12, the second): encoded and kept.
    auto mixed = model.segment(images, 2, {weights, weights}, nullptr, {}, &cache, {11, 12});
    ASSERT_TRUE(mixed) << mixed.error().message;
    EXPECT_EQ(cache.reused(), 3u);
    EXPECT_EQ(cache.bytes(), both / 2 * 3);
    for (size_t p = 0; p < plain->at(1).size(); ++p) ASSERT_NEAR(mixed->at(1)[p], plain->at(1)[p], 1e-4);
    // Slice 11's features are those kept from its image (the second): the cache answers by number.
    for (size_t p = 0; p < plain->at(1).size(); ++p) ASSERT_NEAR(mixed->at(0)[p], plain->at(1)[p], 1e-4);

    FeatureCache full(1);  // no room: nothing kept, every call encodes
    ASSERT_TRUE(model.segment(images, 2, {weights, weights}, nullptr, {}, &full, {10, 11}));
    ASSERT_TRUE(model.segment(images, 2, {weights, weights}, nullptr, {}, &full, {10, 11}));
    EXPECT_EQ(full.bytes(), 0u);
    EXPECT_EQ(full.reused(), 0u);
}
