"""The values of a PDF's filled-in form fields, page by page, as text.

A form's values are not in its pages' content: they live in the fields (``/V``) and are drawn by
their widget annotations, which PDFium's text page does not read (a form environment alone does
not change that). So each page's widgets are read through PDFium's form API, in the page's
annotation order (the order they are drawn in, and the order ``pdftotext -raw`` prints them in),
and their values follow the page's text, one per line:

* a text field gives its value (a multi-line one keeps its lines); a password field gives nothing;
* a combo box gives the label of its selected option (an editable one its own text when none is
  selected), as it is drawn closed; a list box gives the labels of all its options, in order, as it
  is drawn open and as pdftotext prints it (the selected ones among them);
* checkboxes, radio buttons, push buttons and signatures give nothing; nor does a hidden widget.

A field with several widgets (a name repeated on every page) is shown at each, as on paper. Values
come from the field dictionaries, inherited from parent fields as viewers do, whether or not the
widget carries an appearance stream. XFA-only forms are not read (PDFium is built without XFA).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from extract.formats.common import tidy

_NOT_SHOWN = pdfium_c.FPDF_ANNOT_FLAG_HIDDEN | pdfium_c.FPDF_ANNOT_FLAG_NOVIEW
_CHOICES = (pdfium_c.FPDF_FORMFIELD_COMBOBOX, pdfium_c.FPDF_FORMFIELD_LISTBOX)


def form_of(document: Any) -> Any | None:
    """The document's form handle, or ``None`` when it has no form.

    Must be called before any page of ``document`` is loaded (PDFium ties a page's widgets to the
    form environment when the page loads).
    """
    try:
        document.init_forms()
    except pdfium.PdfiumError:  # a form PDFium cannot set up: the pages' text is still read
        return None
    return document.formenv.raw if document.formenv else None


def field_values(form: Any, page: Any) -> list[str]:
    """What the page's form fields hold, in its annotation order; empty values left out."""
    values = []
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page.raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        if not annot:
            continue
        try:
            value = _shown_value(form, annot)
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
        if value:
            values.append(value)
    return values


def _shown_value(form: Any, annot: Any) -> str:
    if pdfium_c.FPDFAnnot_GetSubtype(annot) != pdfium_c.FPDF_ANNOT_WIDGET:
        return ""
    if pdfium_c.FPDFAnnot_GetFlags(annot) & _NOT_SHOWN:
        return ""
    kind = pdfium_c.FPDFAnnot_GetFormFieldType(form, annot)
    if kind == pdfium_c.FPDF_FORMFIELD_TEXTFIELD:
        if pdfium_c.FPDFAnnot_GetFormFieldFlags(form, annot) & pdfium_c.FPDF_FORMFLAG_TEXT_PASSWORD:
            return ""
        return tidy(_wide_string(pdfium_c.FPDFAnnot_GetFormFieldValue, form, annot)).strip()
    if kind in _CHOICES:
        count = max(pdfium_c.FPDFAnnot_GetOptionCount(form, annot), 0)
        listed = kind == pdfium_c.FPDF_FORMFIELD_LISTBOX
        labels = [
            _wide_string(pdfium_c.FPDFAnnot_GetOptionLabel, form, annot, option)
            for option in range(count)
            if listed or pdfium_c.FPDFAnnot_IsOptionSelected(form, annot, option)
        ]
        if not labels and kind == pdfium_c.FPDF_FORMFIELD_COMBOBOX:
            labels = [_wide_string(pdfium_c.FPDFAnnot_GetFormFieldValue, form, annot)]
        return "\n".join(label for label in (tidy(label).strip() for label in labels) if label)
    return ""


def _wide_string(function: Callable[..., int], *args: Any) -> str:
    """A UTF-16 string from one of PDFium's ``(…, buffer, length)`` getters, which return the bytes it needs."""
    size = function(*args, None, 0)
    if size <= 2:  # nothing but the terminating NUL
        return ""
    buffer = ctypes.create_string_buffer(size)
    function(*args, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)), size)
    return buffer.raw[: size - 2].decode("utf-16-le", errors="replace")
