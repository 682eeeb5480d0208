#include "dicom_io/j2k_decoder.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <openjpeg.h>

#include <cstring>
#include <memory>

namespace triage::dicom_io {

using core::ErrorKind;

namespace {

struct Source {
    const std::vector<std::uint8_t>* data;
    size_t pos = 0;
};

OPJ_SIZE_T read_fn(void* dst, OPJ_SIZE_T n, void* user) {
    auto* s = static_cast<Source*>(user);
    if (s->pos >= s->data->size()) return static_cast<OPJ_SIZE_T>(-1);
    size_t take = std::min(n, s->data->size() - s->pos);
    std::memcpy(dst, s->data->data() + s->pos, take);
    s->pos += take;
    return take;
}
OPJ_OFF_T skip_fn(OPJ_OFF_T n, void* user) {
    auto* s = static_cast<Source*>(user);
    s->pos = static_cast<size_t>(std::max<OPJ_OFF_T>(0, static_cast<OPJ_OFF_T>(s->pos) + n));
    return n;
}
OPJ_BOOL seek_fn(OPJ_OFF_T pos, void* user) {
    auto* s = static_cast<Source*>(user);
    if (pos < 0 || static_cast<size_t>(pos) > s->data->size()) return OPJ_FALSE;
    s->pos = static_cast<size_t>(pos);
    return OPJ_TRUE;
}
void quiet(const char*, void*) {}

bool starts_codestream(const std::vector<std::uint8_t>& b) {
    return b.size() >= 4 && b[0] == 0xFF && b[1] == 0x4F && b[2] == 0xFF && b[3] == 0x51;
}

core::Error bad(const std::string& m) { return core::make_error(ErrorKind::InvalidInput, "JPEG 2000: " + m); }

}  // namespace

core::Result<std::vector<std::vector<std::uint8_t>>> j2k_frame_fragments(DcmPixelSequence& seq,
                                                                         unsigned long frames) {
    std::vector<std::vector<std::uint8_t>> fragments;
    for (unsigned long i = 1; i < seq.card(); ++i) {  // item 0 is the basic offset table
        DcmPixelItem* item = nullptr;
        Uint8* p = nullptr;
        if (seq.getItem(item, i).bad() || item->getUint8Array(p).bad()) return bad("unreadable fragment");
        fragments.emplace_back(p, p + item->getLength());
    }
    if (fragments.size() == frames) return fragments;
    std::vector<std::vector<std::uint8_t>> out;
    for (auto& f : fragments) {
        if (out.empty() || (frames > 1 && starts_codestream(f))) {
            out.push_back(std::move(f));
        } else {
            out.back().insert(out.back().end(), f.begin(), f.end());
        }
    }
    if (out.size() != frames)
        return bad(std::to_string(out.size()) + " codestreams for " + std::to_string(frames) + " frames");
    return out;
}

core::Result<std::vector<float>> decode_j2k(const std::vector<std::uint8_t>& data, size_t expected, bool is_signed) {
    bool jp2 = data.size() >= 12 && data[4] == 'j' && data[5] == 'P';
    Source src{&data};
    std::unique_ptr<opj_stream_t, decltype(&opj_stream_destroy)> stream(opj_stream_create(1 << 16, OPJ_TRUE),
                                                                         opj_stream_destroy);
    opj_stream_set_user_data(stream.get(), &src, nullptr);
    opj_stream_set_user_data_length(stream.get(), data.size());
    opj_stream_set_read_function(stream.get(), read_fn);
    opj_stream_set_skip_function(stream.get(), skip_fn);
    opj_stream_set_seek_function(stream.get(), seek_fn);
    std::unique_ptr<opj_codec_t, decltype(&opj_destroy_codec)> codec(
        opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K), opj_destroy_codec);
    opj_set_error_handler(codec.get(), quiet, nullptr);
    opj_set_warning_handler(codec.get(), quiet, nullptr);
    opj_set_info_handler(codec.get(), quiet, nullptr);
    opj_dparameters_t params;
    opj_set_default_decoder_parameters(&params);
    if (!opj_setup_decoder(codec.get(), &params)) return bad("decoder set-up failed");
    opj_image_t* raw = nullptr;
    if (!opj_read_header(stream.get(), codec.get(), &raw)) return bad("bad header");
    std::unique_ptr<opj_image_t, decltype(&opj_image_destroy)> image(raw, opj_image_destroy);
    if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get()))
        return bad("decoding failed (truncated or corrupt codestream)");
    if (image->numcomps < 1) return bad("no components");
    const opj_image_comp_t& c = image->comps[0];
    if (static_cast<size_t>(c.w) * c.h != expected || !c.data) return bad("image size differs from Rows x Columns");
    std::vector<float> out(expected);
    for (size_t i = 0; i < expected; ++i) {
        OPJ_INT32 v = c.data[i];
        if (!c.sgnd && is_signed && c.prec > 0 && c.prec < 32 && (v >> (c.prec - 1)) & 1) v -= (1 << c.prec);
        out[i] = static_cast<float>(v);
    }
    return out;
}

}  // namespace triage::dicom_io
