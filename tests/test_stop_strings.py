from ggrun.engine import _StopMatcher


def test_holds_back_possible_stop_prefix():
    m = _StopMatcher(["###"])
    assert m.push("hello #") == ("hello ", False)
    assert m.push("#") == ("", False)
    assert m.push("x") == ("##x", False)
    assert m.push(" ##") == (" ", False)
    assert m.push("# tail") == ("", True)


def test_no_stops_passes_through():
    m = _StopMatcher([])
    assert m.push("abc") == ("abc", False)
