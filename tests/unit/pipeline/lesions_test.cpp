// The analyzer's gates (pipeline/lesions.h, pipeline/region.h) on hand-made volumes: each gate
// passes a plausible lesion and rejects the case it exists for, with its named reason.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/analyzer_model.h"
#include "pipeline/lesions.h"
#include "pipeline/region.h"

using namespace triage;
using namespace triage::pipeline;

namespace {

/// A CT trunk: air outside, an elliptical body of 40 HU, optionally two lungs of -850 HU.
core::Volume trunk(int slices, bool lungs, int size = 128, double spacing = 2.5) {
    core::Volume v;
    v.modality = "CT";
    v.columns = v.rows = size;
    v.slices = slices;
    v.row_spacing = v.column_spacing = spacing;
    v.slice_spacing = 5;
    v.voxels.assign(static_cast<size_t>(slices) * size * size, -1000.0f);
    for (int z = 0; z < slices; ++z) {
        v.sources.push_back({"1.2.3." + std::to_string(z), "", 0, {-size * spacing / 2, -size * spacing / 2, 5.0 * z}});
        v.slice_positions.push_back(5.0 * z);
        for (int y = 0; y < size; ++y)
            for (int x = 0; x < size; ++x) {
                const double dx = (x - size / 2.0) / (size * 0.45), dy = (y - size / 2.0) / (size * 0.33);
                float& p = v.voxels[(static_cast<size_t>(z) * size + y) * size + x];
                if (dx * dx + dy * dy < 1) p = 40;
                for (double cx : {0.3, 0.7})
                    if (lungs && std::hypot(x - size * cx, (y - size / 2.0) * 1.3) < size * 0.15) p = -850;
            }
    }
    return v;
}

/// A ball of voxels (radius in pixels) at (z, y, x), values set to `value` in the volume.
Component ball(core::Volume& v, int z0, int y0, int x0, int r, float value) {
    Component c;
    for (int z = 0; z < v.slices; ++z)
        for (int y = 0; y < v.rows; ++y)
            for (int x = 0; x < v.columns; ++x)
                if (std::hypot((z - z0) * v.slice_spacing / v.row_spacing, y - y0, x - x0) <= r) {
                    const size_t i = (static_cast<size_t>(z) * v.rows + y) * v.columns + x;
                    c.voxels.push_back(i);
                    v.voxels[i] = value;
                }
    return c;
}

std::vector<std::uint8_t> prob_of(const core::Volume& v, const Component& c, std::uint8_t p = 230) {
    std::vector<std::uint8_t> prob(v.voxels.size(), 0);
    for (size_t i : c.voxels) prob[i] = p;
    return prob;
}

}  // namespace

TEST(Lesions, ComponentsAndMeasurementsOfAHandMadeBall) {
    core::Volume v = trunk(10, false);
    Component c = ball(v, 5, 64, 40, 6, 10);
    auto found = components(prob_of(v, c), v, 127);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].voxels.size(), c.voxels.size());
    core::Finding f = measure(found[0], v, prob_of(v, c));
    EXPECT_NEAR(f.diameter_mm, 13 * 2.5, 2.5);  // 13 pixels across at 2.5 mm
    EXPECT_EQ(f.key_slice, 5);
    EXPECT_NEAR(f.confidence, 230 / 255.0, 1e-6);
    EXPECT_FALSE(truncated(f, v));
    EXPECT_EQ(f.side, "right");  // image left = patient right
}

TEST(Lesions, ALesionAtTheLastSliceIsTruncated) {
    core::Volume v = trunk(6, false);
    const Component equator = ball(v, 5, 64, 64, 5, 10);  // cut through its widest section: diameter a lower bound
    core::Finding f = measure(equator, v, prob_of(v, equator));
    EXPECT_TRUE(truncated(f, v));
    EXPECT_FALSE(widest_inside(equator, f, v));
    core::Volume w = trunk(6, false);
    const Component cap = ball(w, 3, 64, 64, 6, 10);  // centre on slice 3, cut on slice 5 (4.5 of 6 pixels' radius)
    const core::Finding g = measure(cap, w, prob_of(w, cap));
    EXPECT_TRUE(truncated(g, w));
    EXPECT_TRUE(widest_inside(cap, g, w));
}

TEST(Lesions, ACutSectionTooSmallForTheCutOfATumourIsNotOne) {
    core::Finding f;
    f.first_slice = 0, f.last_slice = 1;  // 2 slices of 4.7 mm: a 30 mm sphere shows 25.4 mm at the cut
    f.diameter_mm = 12.9;                 // second renderer: a 13.2 mm nodule cut by the first slice
    EXPECT_FALSE(cut_could_be(f, 4.69, 30));
    f.diameter_mm = 16;  // 0.63 of the sphere's section
    EXPECT_TRUE(cut_could_be(f, 4.69, 30));
    f.last_slice = 0, f.diameter_mm = 6.6;  // one slice of 3.6 mm: 14.3 mm expected, 7.8 mm nodule
    EXPECT_FALSE(cut_could_be(f, 3.62, 30));
    f.last_slice = 9, f.diameter_mm = 25;  // 9.5 slices of 3 mm: past a 30 mm sphere's equator, 30 mm expected
    EXPECT_TRUE(cut_could_be(f, 3, 30));
    f.diameter_mm = 17;
    EXPECT_FALSE(cut_could_be(f, 3, 30));
}

TEST(Lesions, GateMaxDiameterInPlaneAndAlongZ) {
    core::Finding f;
    f.diameter_mm = 60, f.first_slice = 10, f.last_slice = 25;  // 16 slices of 5 mm: 75 mm less one slice
    EXPECT_FALSE(gate_max_diameter(f, 77, 5));
    f.last_slice = 30;  // 100 mm along z: the heart, not a 30-70 mm lung tumour
    auto g = gate_max_diameter(f, 77, 5);
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "above_max_diameter");
    f.last_slice = 20, f.diameter_mm = 80;
    EXPECT_TRUE(gate_max_diameter(f, 77, 5));
}

TEST(Lesions, GateSlicesAndMinDiameter) {
    EXPECT_FALSE(gate_slices(2, 2));
    auto g = gate_slices(1, 2);
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "too_few_slices");
    core::Finding f;
    f.diameter_mm = 12, f.first_slice = 3, f.last_slice = 6;  // 4 slices
    EXPECT_FALSE(gate_min_diameter(f, 10, 2.5));
    EXPECT_TRUE(gate_min_diameter(f, 13, 2.5));  // too small in-plane
    f.last_slice = 4;                             // 2 slices of 2.5 mm: not 10 mm along z
    ASSERT_TRUE(gate_min_diameter(f, 10, 2.5));
    EXPECT_STREQ(reject_name(gate_min_diameter(f, 10, 2.5)->reason), "below_min_diameter");
}

TEST(Lesions, GateBorder) {
    // A faint "liver tumor" with the kidney in a third of its ring: a kidney pole abutting the liver.
    const std::map<std::string, std::string> organs{{"liver tumor", "liver"}, {"kidney tumor", "kidney"}};
    auto g = gate_border({{"liver tumor", 0.62}, {"kidney tumor", 0.31}}, "liver tumor", 0.25, organs);
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "isodense");
    EXPECT_EQ(g->why, "at the border of the kidney (0.31 of its ring) and the liver");
    EXPECT_FALSE(gate_border({{"liver tumor", 0.9}, {"kidney tumor", 0.1}}, "liver tumor", 0.25, organs));  // inside the liver
    EXPECT_FALSE(gate_border({{"liver tumor", 0.62}, {"kidney tumor", 0.31}}, "liver tumor", 0, organs));   // rule off
}

TEST(Lesions, GateHostShare) {
    // Soft tissue beside the liver answered "liver tumor": the liver holds a quarter of its ring.
    const std::map<std::string, std::string> organs{{"liver tumor", "liver"}, {"kidney tumor", "kidney"}};
    const std::map<std::string, double> need{{"liver tumor", 0.5}};
    auto g = gate_host_share({{"liver tumor", 0.26}, {"kidney tumor", 0.0}}, "liver tumor", need, organs);
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "outside_host");
    EXPECT_EQ(g->why, "not inside the liver: 0.26 of the ring around its key slice, under 0.50");
    EXPECT_FALSE(gate_host_share({{"liver tumor", 0.81}}, "liver tumor", need, organs));     // inside the liver
    EXPECT_FALSE(gate_host_share({{"kidney tumor", 0.26}}, "kidney tumor", need, organs));   // no rule for exophytic kidney tumours
    EXPECT_TRUE(gate_host_share({}, "liver tumor", need, organs));                           // no liver found around it
    EXPECT_FALSE(gate_host_share({{"liver tumor", 0.1}}, "liver tumor", {}, organs));        // rule off
}

TEST(Lesions, GateContrastAndConfidence) {
    core::Volume v = trunk(10, false);
    Component dark = ball(v, 5, 64, 40, 6, 10);  // 30 HU below the 40 HU trunk
    const auto prob = prob_of(v, dark);
    const double hu = contrast(v, dark, prob, 127);
    EXPECT_NEAR(hu, -30, 1);
    EXPECT_FALSE(gate_contrast(hu, 10, "tissue"));
    Component iso = ball(v, 5, 64, 90, 6, 43);
    auto g = gate_contrast(contrast(v, iso, prob_of(v, iso), 127), 10, "tissue");
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "isodense");
    EXPECT_EQ(g->why, "+3 HU to the tissue around it");
    // A lung tumour against the mediastinum, at its density (PHANTOMS.md: +20 to +50 HU, may abut
    // it): against the whole ring it looks isodense; a lung lesion is measured against the lung.
    core::Volume chest = trunk(10, true);
    Component abutting = ball(chest, 5, 64, 60, 6, 40);
    const auto abutting_prob = prob_of(chest, abutting);
    EXPECT_LT(std::abs(contrast(chest, abutting, abutting_prob, 127)), 10);
    EXPECT_GT(contrast(chest, abutting, abutting_prob, 127, true), 800);
    Component mediastinal = ball(chest, 5, 64, 64, 3, 40);  // no lung around it: the whole ring
    EXPECT_LT(std::abs(contrast(chest, mediastinal, prob_of(chest, mediastinal), 127, true)), 10);
    EXPECT_FALSE(gate_confidence(0.8, 0.6));
    ASSERT_TRUE(gate_confidence(0.55, 0.6));
    EXPECT_STREQ(reject_name(gate_confidence(0.55, 0.6)->reason), "low_confidence");
}

TEST(Lesions, RingAroundStaysInTheBoundingBoxAndOutsideTheLesion) {
    core::Volume v = trunk(1, false, 32, 1);
    std::vector<size_t> pixels{static_cast<size_t>(10 * 32 + 10)};
    auto ring = ring_around(v, pixels, 1);
    EXPECT_EQ(ring.size(), 8u);  // the 3x3 block minus its centre
    for (size_t i : ring) EXPECT_NE(i, pixels[0]);
    EXPECT_EQ(ring_around(v, {0}, 2).size(), 8u);  // a corner: clipped at the image border
}

TEST(Lesions, GateShapeRejectsOutlineOutsideHugeAndShellMasks) {
    core::Volume v = trunk(10, false);
    const BodyMap body = body_map(v);
    auto verdict = [&](const Component& c) { return gate_shape(measure(c, v, prob_of(v, c)), c, v, body); };
    core::Volume plain = v;
    EXPECT_FALSE(verdict(ball(plain, 5, 64, 50, 6, 10)));  // inside the body, compact
    // Outside the body (air above the trunk).
    Component air;
    for (int z = 4; z < 7; ++z)
        for (int y = 2; y < 10; ++y)
            for (int x = 60; x < 68; ++x) air.voxels.push_back((static_cast<size_t>(z) * 128 + y) * 128 + x);
    ASSERT_TRUE(verdict(air));
    EXPECT_STREQ(reject_name(verdict(air)->reason), "implausible_shape");
    EXPECT_NE(verdict(air)->why.find("outside the body"), std::string::npos);
    // The body outline: a band along the skin.
    Component skin;
    for (int z = 4; z < 7; ++z)
        for (int y = 0; y < 128; ++y)
            for (int x = 0; x < 128; ++x) {
                const double dx = (x - 64.0) / (128 * 0.45), dy = (y - 64.0) / (128 * 0.33), r = std::sqrt(dx * dx + dy * dy);
                if (r < 1 && r > 0.93 && y > 64) skin.voxels.push_back((static_cast<size_t>(z) * 128 + y) * 128 + x);
            }
    ASSERT_TRUE(verdict(skin));
    EXPECT_NE(verdict(skin)->why.find("body outline"), std::string::npos);
    // Half the body's cross-section.
    Component half;
    for (int z = 4; z < 7; ++z)
        for (int y = 34; y < 94; ++y)
            for (int x = 20; x < 70; ++x) half.voxels.push_back((static_cast<size_t>(z) * 128 + y) * 128 + x);
    ASSERT_TRUE(verdict(half));
    EXPECT_NE(verdict(half)->why.find("cross-section"), std::string::npos);
    // A thin shell: a one-pixel circle of 30 pixels' radius inside the body.
    Component shell;
    for (int z = 4; z < 7; ++z)
        for (int a = 0; a < 720; ++a) {
            const int y = 64 + static_cast<int>(std::lround(25 * std::sin(a * M_PI / 360)));
            const int x = 64 + static_cast<int>(std::lround(35 * std::cos(a * M_PI / 360)));
            shell.voxels.push_back((static_cast<size_t>(z) * 128 + y) * 128 + x);
        }
    std::sort(shell.voxels.begin(), shell.voxels.end());
    shell.voxels.erase(std::unique(shell.voxels.begin(), shell.voxels.end()), shell.voxels.end());
    ASSERT_TRUE(verdict(shell));
    EXPECT_NE(verdict(shell)->why.find("thin shell"), std::string::npos);
    // A tube along z: 4 pixels (10 mm) across on 8 slices of 5 mm (40 mm long, 4 x 10 mm) passes;
    // on 20 slices (100 mm) it is a vessel or the spinal canal.
    core::Volume tall = trunk(20, false);
    const BodyMap tall_body = body_map(tall);
    auto tube = [&](int slices) {
        Component c;
        for (int z = 0; z < slices; ++z)
            for (int y = 70; y < 74; ++y)
                for (int x = 62; x < 66; ++x) c.voxels.push_back((static_cast<size_t>(z) * 128 + y) * 128 + x);
        return gate_shape(measure(c, tall, prob_of(tall, c)), c, tall, tall_body);
    };
    EXPECT_FALSE(tube(8));
    auto long_tube = tube(20);
    ASSERT_TRUE(long_tube);
    EXPECT_NE(long_tube->why.find("tube along z"), std::string::npos);
}

TEST(Lesions, GateContinuesRejectsTheSectionOfALongerStructure) {
    core::Volume v = trunk(20, false);  // slices of 5 mm
    const Component lesion = ball(v, 10, 64, 40, 5, 10);  // 25 mm across: 40 HU beyond both ends
    EXPECT_FALSE(gate_continues(v, lesion, measure(lesion, v, prob_of(v, lesion))));
    // An organ of 10 HU along z from slice 2 up (a kidney), segmented on slices 12-15 only: under its
    // first slice the organ goes on at the mask's own density, as far as the gate looks (0.75 of its 34 mm diagonal).
    auto organ_section = [&](int from, int to) {
        core::Volume w = trunk(20, false);
        Component mask;
        for (int z = 2; z < 20; ++z)
            for (int y = 60; y < 70; ++y)
                for (int x = 80; x < 90; ++x) {
                    const size_t i = (static_cast<size_t>(z) * 128 + y) * 128 + x;
                    w.voxels[i] = 10;
                    if (z >= from && z <= to) mask.voxels.push_back(i);
                }
        return gate_continues(w, mask, measure(mask, w, prob_of(w, mask)));
    };
    const auto pole = organ_section(12, 15);
    ASSERT_TRUE(pole);
    EXPECT_STREQ(reject_name(pole->reason), "implausible_shape");
    EXPECT_EQ(pole->why, "the tissue under its first slice continues 25 mm below it at its own density (10 HU, within 6 HU on 5 of "
                         "5 slices): part of a longer structure, an organ, not a lesion");
    // Its lower end segmented whole, up to the volume's last slice: beyond the first slice is the
    // body's 40 HU, and the volume ends before the look above could be made.
    EXPECT_FALSE(organ_section(2, 19));
}

TEST(Lesions, GateInLungNeedsLungAroundALungLesion) {
    core::Volume v = trunk(6, true);
    Component nodule = ball(v, 3, 64, static_cast<int>(128 * 0.3), 5, 20);  // inside the right lung
    EXPECT_GT(lung_ring_share(v, nodule, 3), 0.9);
    const BodyMap body = body_map(v);
    EXPECT_NEAR(midline_offset(v, nodule, 3, body), -0.45, 0.05);  // in the image's left half
    EXPECT_FALSE(gate_in_lung(lung_ring_share(v, nodule, 3), midline_offset(v, nodule, 3, body)));
    Component middle = ball(v, 3, 36, 64, 5, 20);  // in front of the lungs, in 40-HU tissue (the spinal canal's case)
    EXPECT_EQ(lung_ring_share(v, middle, 3), 0.0);
    auto g = gate_in_lung(lung_ring_share(v, middle, 3), midline_offset(v, middle, 3, body));
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "outside_host");
    EXPECT_NE(g->why.find("not in a lung: 0%"), std::string::npos);
    // Between the lungs with lung on both sides (the heart bulging into them): a third of its ring is
    // lung, its centre on the midline; a lesion in a lung against the mediastinum keeps its place.
    auto heart = gate_in_lung(0.35, 0.14);
    ASSERT_TRUE(heart);
    EXPECT_STREQ(reject_name(heart->reason), "outside_host");
    EXPECT_EQ(heart->why, "between the lungs: 35% of the ring around its key slice at lung density and its centre 0.14 of the body's "
                          "half-width from the midline (under 45% and 0.35): the heart or a great vessel");
    EXPECT_FALSE(gate_in_lung(0.42, 0.64));  // a tumour in a lung, abutting the mediastinum
    EXPECT_FALSE(gate_in_lung(0.60, 0.10));  // mostly lung around it
}

TEST(Region, HeaderFirstThenContent) {
    core::Volume chest = trunk(8, true);
    core::Volume abdomen = trunk(8, false);
    EXPECT_EQ(series_region(chest, body_map(chest)).text(), "CHEST");
    EXPECT_EQ(series_region(abdomen, body_map(abdomen)).text(), "ABDOMEN");
    abdomen.body_part = "HEAD";  // the header wins over the content
    EXPECT_EQ(series_region(abdomen, body_map(abdomen)).text(), "HEAD");
    core::Volume head = trunk(8, false, 128, 1.2);  // 128 x 1.2 mm: a body under 230 mm wide
    EXPECT_EQ(series_region(head, body_map(head)).text(), "HEAD");
    // A chest CT reaching the upper abdomen: lungs on its upper half only.
    core::Volume both = trunk(10, true);
    core::Volume lower = trunk(10, false);
    std::copy(lower.voxels.begin(), lower.voxels.begin() + 4 * 128 * 128, both.voxels.begin());
    both.body_part = "CHEST";
    const SeriesRegion r = series_region(both, body_map(both));
    EXPECT_TRUE(r.has("CHEST"));
    EXPECT_TRUE(r.has("ABDOMEN"));
}

TEST(Region, GateRegionRejectsALabelOfAnotherRegion) {
    SeriesRegion chest{{"CHEST"}, "header: BodyPartExamined CHEST"};
    EXPECT_FALSE(gate_region("lung nodule", chest));
    auto g = gate_region("brain tumor", chest);
    ASSERT_TRUE(g);
    EXPECT_STREQ(reject_name(g->reason), "implausible_region");
    EXPECT_NE(g->why.find("implausible for region CHEST"), std::string::npos);
    EXPECT_TRUE(gate_region("kidney tumor", chest));
    EXPECT_FALSE(gate_region("pneumothorax", chest));  // free text of a full model: not restricted
    EXPECT_FALSE(gate_region("brain tumor", SeriesRegion{}));  // region unknown: nothing restricted
}

TEST(Region, ALesionNamedForAnotherRegionInALungIsALungLesion) {
    const SeriesRegion chest{{"CHEST"}, "header: BodyPartExamined CHEST"};
    auto why = lung_by_anatomy("liver tumor", chest, 0.4);
    ASSERT_TRUE(why);
    EXPECT_EQ(*why, "liver tumor is not of region CHEST, and 40% of the ring around its key slice is lung: lung");
    EXPECT_FALSE(lung_by_anatomy("liver tumor", chest, 0.02));  // not in a lung (the liver dome): rejected as implausible
    EXPECT_FALSE(lung_by_anatomy("pancreas tumor", chest, 0.21));  // lung beside it, not around it: soft tissue at the base
    EXPECT_TRUE(lung_by_anatomy("pancreas tumor", chest, 0.3));
    EXPECT_FALSE(lung_by_anatomy("lung nodule", chest, 0.4));   // its name stands
    EXPECT_FALSE(lung_by_anatomy("brain tumor", chest, 0.4));   // not a neighbour of the lungs: implausible
    const SeriesRegion both{{"CHEST", "ABDOMEN"}, "content"};
    EXPECT_FALSE(lung_by_anatomy("liver tumor", both, 0.4));    // plausible there: the host organ decides
    const SeriesRegion head{{"HEAD"}, "header: BodyPartExamined HEAD"};
    EXPECT_FALSE(lung_by_anatomy("liver tumor", head, 0.4));    // no lung class in the region
}

TEST(Domain, WhiteNoiseIsInsideTexturedImagesAndOtherGeometryAreOutside) {
    core::Volume v = trunk(8, false);
    std::srand(7);
    for (auto& x : v.voxels)
        if (x > -500) x += static_cast<float>((std::rand() % 2001 - 1000) / 50.0);  // white noise, +-20 HU
    const double white = texture_ratio(v, body_map(v));
    EXPECT_NEAR(white, 1.0, 0.15);
    core::Volume smooth = v;  // correlated noise: each pixel the mean of itself and its right neighbour, twice
    for (int pass = 0; pass < 2; ++pass)
        for (size_t i = 0; i + 1 < smooth.voxels.size(); ++i)
            if (smooth.voxels[i] > -500 && smooth.voxels[i + 1] > -500) smooth.voxels[i] = (smooth.voxels[i] + smooth.voxels[i + 1]) / 2;
    const double real = texture_ratio(smooth, body_map(smooth));
    EXPECT_GT(real, 1.3);
    auto d = parse_domain(R"({"description": "phantoms", "axial_only": true,
                              "CT": {"pixel_spacing_mm": [0.5, 3.0], "slice_spacing_mm": [2, 6], "max_texture_ratio": 1.3}})");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_FALSE(outside_domain(*d, v, white));
    auto why = outside_domain(*d, smooth, real);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("texture"), std::string::npos);
    v.slice_spacing = 1;
    EXPECT_NE(outside_domain(*d, v, white).value_or("").find("slice spacing"), std::string::npos);
    EXPECT_FALSE(parse_domain(R"({"description": "x", "CT": {"slice_spacing_mm": [5, 2]}})"));
    EXPECT_FALSE(parse_domain(R"({"CT": {}})"));  // a description is required
    EXPECT_FALSE(parse_domain(R"({"description": "x", "CT": {"regions": ["KNEE"]}})"));
}

TEST(Domain, TooManyConfidentCandidatesAreOutsideButFaintFragmentsAreNot) {
    auto d = parse_domain(R"({"description": "phantoms", "max_candidates": 40, "CT": {}})");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_FALSE(too_many_candidates(*d, 40, 40));
    EXPECT_FALSE(too_many_candidates(*d, 3, 272));  // a phantom of another renderer: fragments under the confidence
    auto why = too_many_candidates(*d, 41, 300);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("41 confident lesion candidates (of 300 mask components), more than the 40"), std::string::npos) << *why;
    EXPECT_FALSE(too_many_candidates(Domain{}, 500, 500));  // not declared: not checked
    EXPECT_FALSE(parse_domain(R"({"description": "x", "max_candidates": -1})"));
}

TEST(Domain, SeriesOfAnotherModalityRegionOrOrientationAreNotValidated) {
    auto d = parse_domain(R"({"description": "phantoms", "axial_only": true,
                              "CT": {"regions": ["CHEST", "ABDOMEN"]}, "MR": {"regions": ["HEAD"]}})");
    ASSERT_TRUE(d) << d.error().message;
    core::Volume v = trunk(8, false);
    const SeriesRegion chest{{"CHEST"}, "content"}, head{{"HEAD"}, "header: BodyPartExamined HEAD"};
    EXPECT_FALSE(not_validated(*d, v, chest, 1.0));
    EXPECT_FALSE(not_validated(*d, v, SeriesRegion{{"HEAD", "CHEST"}, "header"}, 1.0));  // one validated region is enough
    auto why = not_validated(*d, v, head, 1.0);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("CT of the HEAD"), std::string::npos) << *why;
    EXPECT_NE(why->find("CHEST/ABDOMEN"), std::string::npos) << *why;
    auto textured = parse_domain(R"({"description": "phantoms", "CT": {"max_texture_ratio": 1.3, "skip_texture_ratio": 1.45}})");
    ASSERT_TRUE(textured) << textured.error().message;
    EXPECT_FALSE(not_validated(*textured, v, chest, 1.4));  // far from the phantoms: analyzed, flagged
    EXPECT_NE(not_validated(*textured, v, chest, 1.6).value_or("").find("texture ratio 1.60 > 1.45"), std::string::npos);
    EXPECT_FALSE(parse_domain(R"({"description": "x", "CT": {"max_texture_ratio": 1.3, "skip_texture_ratio": 1.2}})"));
    v.normal = {1, 0, 0};  // sagittal
    EXPECT_NE(not_validated(*d, v, chest, 1.0).value_or("").find("not axial"), std::string::npos);
    v.modality = "MR", v.normal = {0, 0, 1};
    EXPECT_FALSE(not_validated(*d, v, head, 1.0));
    EXPECT_TRUE(not_validated(*d, v, SeriesRegion{}, 1.0));  // an MR whose region nothing tells
    v.modality = "PT";
    EXPECT_NE(not_validated(*d, v, head, 1.0).value_or("").find("modality PT"), std::string::npos);
    EXPECT_FALSE(not_validated(Domain{}, v, head, 1.0));  // no domain declared: everything is analyzed
}

TEST(Propagation, ReachIsTheLargestLesionOfTheGroup) {
    Manifest m;
    EXPECT_TRUE(std::isinf(detail::reach_mm(m, "lung")));  // no size range declared: carried as far as found
    m.max_diameter_mm = {{"lung nodule", 33}, {"lung tumor", 77}, {"liver tumor", 66}};
    EXPECT_DOUBLE_EQ(detail::reach_mm(m, "lung"), 77);  // one group for both lung classes
    EXPECT_DOUBLE_EQ(detail::reach_mm(m, "liver tumor"), 66);
    EXPECT_DOUBLE_EQ(detail::reach_mm(m, detail::kAsked + "liver tumor"), 66);  // the referring sweep's group
    EXPECT_TRUE(std::isinf(detail::reach_mm(m, "kidney tumor")));
}

TEST(HostLabel, TheOrganAroundALesionNamesIt) {
    Manifest m;
    m.host_organs = {{"liver tumor", "liver"}, {"kidney tumor", "kidney"}, {"pancreas tumor", "pancreas"}};
    m.host_ring_mm = 5, m.host_min_coverage = 0.15, m.host_min_lead = 0.1;
    const core::Volume v = trunk(1, false);  // 128 x 128 pixels of 2.5 mm: a ring of 2 pixels
    std::vector<size_t> lesion;              // 6 x 6 pixels; its ring 10 x 10 - 36 = 64 pixels
    for (int y = 60; y < 66; ++y)
        for (int x = 60; x < 66; ++x) lesion.push_back(static_cast<size_t>(y) * 128 + x);
    auto plane = [](int y0, int y1, int x0, int x1) {  // an organ over [y0, y1) x [x0, x1)
        std::vector<std::uint8_t> p(128 * 128, 0);
        for (int y = y0; y < y1; ++y)
            for (int x = x0; x < x1; ++x) p[static_cast<size_t>(y) * 128 + x] = 255;
        return p;
    };
    // Liver all around: a lesion recognized as kidney tumor is renamed.
    detail::OrganPlanes planes{{"liver tumor", plane(40, 90, 40, 90)}, {"kidney tumor", plane(100, 120, 100, 120)}};
    detail::Naming n = detail::host_label(m, v, planes, lesion, "kidney tumor");
    EXPECT_EQ(n.label, "liver tumor") << n.evidence;
    EXPECT_EQ(n.organ_ring.size(), 64u);
    EXPECT_DOUBLE_EQ(n.covered.at("liver tumor"), 1.0);
    // The liver in the image but not around it, the pancreas on 5 of the 64 ring pixels (0.08, under
    // host_min_coverage): a "liver tumor" with no liver around it takes the pancreas' name.
    planes = {{"liver tumor", plane(0, 20, 0, 20)}, {"pancreas tumor", plane(58, 59, 58, 63)}};
    for (int y = 100; y < 110; ++y) std::fill_n(planes["pancreas tumor"].begin() + y * 128 + 100, 10, 255);
    n = detail::host_label(m, v, planes, lesion, "liver tumor");
    EXPECT_EQ(n.label, "pancreas tumor") << n.evidence;
    EXPECT_NE(n.evidence.find("no liver around it: pancreas ahead by 0.08"), std::string::npos) << n.evidence;
    // With the pancreas on 2 ring pixels (0.03) nothing is around it: the recognized name stays.
    planes["pancreas tumor"] = plane(58, 59, 58, 60);
    for (int y = 100; y < 110; ++y) std::fill_n(planes["pancreas tumor"].begin() + y * 128 + 100, 10, 255);
    n = detail::host_label(m, v, planes, lesion, "liver tumor");
    EXPECT_EQ(n.label, "liver tumor") << n.evidence;
    EXPECT_NE(n.evidence.find("name kept"), std::string::npos) << n.evidence;
    // An organ found on under 50 mm2 of the slice is not in the image and names nothing.
    planes = {{"kidney tumor", plane(58, 59, 58, 60)}};
    n = detail::host_label(m, v, planes, lesion, "liver tumor");
    EXPECT_EQ(n.label, "liver tumor");
    EXPECT_NE(n.evidence.find("not in the image: kidney"), std::string::npos) << n.evidence;
}
