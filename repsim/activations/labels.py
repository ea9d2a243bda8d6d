"""Which class a stimulus was heard and seen as, and the class names, in an activation file.

The digit datasets label stimuli with the digits themselves, in ``audio_digit`` and
``visual_digit``; every other dataset with class indices in ``audio_class`` and
``visual_class``, whose names the file stores in its probe set record (``probe_set`` attribute,
``class_names``). Figures and study summaries ask here instead of naming either pair.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from repsim.activations.format import CLASS_COORDS, CLASS_NAMES, DIGIT_COORDS

DIGIT_NAMES = tuple(str(d) for d in range(10))


def label_coords(data: xr.Dataset) -> tuple[str, str]:
    """The heard and the seen label coordinates of a file.

    Parameters
    ----------
    data
        An open activation file.

    Returns
    -------
    tuple of str
        ``("audio_digit", "visual_digit")`` in a digit dataset's file,
        ``("audio_class", "visual_class")`` otherwise.

    Raises
    ------
    ValueError
        When the file has neither pair.
    """
    for pair in (DIGIT_COORDS, CLASS_COORDS):
        if all(name in data.coords for name in pair):
            return pair
    raise ValueError(f"the activation file has no class labels (neither "
                     f"{' and '.join(DIGIT_COORDS)} nor {' and '.join(CLASS_COORDS)})")


def is_digits(data: xr.Dataset) -> bool:
    """Whether a file is labelled with the digits 0-9 (a digit dataset's file).

    Parameters
    ----------
    data
        An open activation file.

    Returns
    -------
    bool
    """
    return label_coords(data) == DIGIT_COORDS


def class_names(data: xr.Dataset) -> list[str]:
    """The name of every label value, in label order.

    Parameters
    ----------
    data
        An open activation file.

    Returns
    -------
    list of str
        ``"0"``..``"9"`` for digits; the names the probe set recorded otherwise (or, in a file
        without them, the label values seen).
    """
    if is_digits(data):
        return list(DIGIT_NAMES)
    record = json.loads(data.attrs.get("probe_set", "{}"))
    if CLASS_NAMES in record:
        return [str(name) for name in record[CLASS_NAMES]]
    values = np.unique(np.concatenate([data[name].values for name in CLASS_COORDS]))
    return [str(value) for value in values]


def chance_level(data: xr.Dataset) -> float:
    """The accuracy of guessing among equally frequent classes.

    Parameters
    ----------
    data
        An open activation file.

    Returns
    -------
    float
        1 / the number of classes.
    """
    return 1.0 / len(class_names(data))
