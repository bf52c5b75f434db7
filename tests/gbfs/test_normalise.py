"""Normalisation of hand-written GBFS v1.0, v1.1, v2.3, v3.0 and Vélib-style documents."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.gbfs.normalise import (
    INFORMATION_COLUMNS,
    STATUS_COLUMNS,
    FeedFormatError,
    detect_version,
    feed_last_updated,
    normalise_station_information,
    normalise_station_status,
    normalise_system_information,
    normalise_vehicle_types,
    read_station_information,
    read_station_status,
)

T0 = 1677700000  # 2023-03-01T19:46:40Z
T0_TS = pd.Timestamp(T0, unit="s", tz="UTC")


def v10_status() -> dict:
    """GBFS 1.0: no version field, 0/1 flags, POSIX times, an extra vendor field."""
    return {
        "last_updated": T0,
        "ttl": 10,
        "data": {
            "stations": [
                {
                    "station_id": "a",
                    "num_bikes_available": 3,
                    "num_ebikes_available": 1,
                    "num_docks_available": 7,
                    "num_bikes_disabled": 0,
                    "num_docks_disabled": 1,
                    "is_installed": 1,
                    "is_renting": 0,
                    "is_returning": 1,
                    "last_reported": T0 - 60,
                    "eightd_has_available_keys": False,
                },
                {
                    # no num_docks_disabled / num_ebikes_available: absent must stay <NA>, never 0
                    "station_id": "b",
                    "num_bikes_available": 0,
                    "num_docks_available": 12,
                    "is_installed": 0,
                    "is_renting": 0,
                    "is_returning": 0,
                    "last_reported": 86400,
                },
            ]
        },
    }


def test_v10_flags_counts_and_absent_fields() -> None:
    doc = v10_status()
    assert detect_version(doc) == "1.1"
    frame = normalise_station_status(doc)
    assert list(frame.columns) == list(STATUS_COLUMNS)
    assert frame["station_id"].tolist() == ["a", "b"]
    assert frame["bikes"].tolist() == [3, 0]
    assert frame["ebikes"].iloc[0] == 1 and frame["ebikes"].isna().iloc[1]
    assert frame["docks_disabled"].iloc[0] == 1 and frame["docks_disabled"].isna().iloc[1]
    assert frame["bikes_disabled"].isna().iloc[1]
    assert frame["is_installed"].tolist() == [True, False]
    assert frame["is_renting"].tolist() == [False, False]
    assert frame["last_reported"].iloc[0] == T0_TS - pd.Timedelta(seconds=60)
    assert frame["last_reported"].iloc[1] == pd.Timestamp("1970-01-02", tz="UTC")
    assert (frame["last_updated"] == T0_TS).all()
    assert str(frame["bikes"].dtype) == "Int32"
    assert str(frame["is_installed"].dtype) == "boolean"
    assert str(frame["last_reported"].dtype) == "datetime64[us, UTC]"


def test_v11_with_boolean_and_string_flags_and_bad_counts() -> None:
    doc = v10_status()
    doc["version"] = "1.1"
    stations = doc["data"]["stations"]
    stations[0]["is_renting"] = True
    stations[1]["is_installed"] = "true"
    stations[1]["num_bikes_available"] = "lots"  # a row-level defect: null, not a crash
    stations[1]["num_docks_available"] = 4.0
    frame = normalise_station_status(doc)
    assert frame["is_renting"].tolist() == [True, False]
    assert frame["is_installed"].tolist() == [True, True]
    assert frame["bikes"].isna().iloc[1]
    assert frame["docks"].iloc[1] == 4


def test_v23_counts_ebikes_from_vehicle_types() -> None:
    doc = {
        "last_updated": T0,
        "ttl": 0,
        "version": "2.3",
        "data": {
            "stations": [
                {
                    "station_id": "s1",
                    "num_bikes_available": 5,
                    "vehicle_types_available": [
                        {"vehicle_type_id": "classic", "count": 2},
                        {"vehicle_type_id": "boost", "count": 2},
                        {"vehicle_type_id": "cosmo", "count": 1},
                    ],
                    "num_docks_available": 3,
                    "is_installed": True,
                    "is_renting": True,
                    "is_returning": False,
                    "last_reported": T0,
                }
            ]
        },
    }
    types = normalise_vehicle_types(
        {
            "last_updated": T0,
            "ttl": 0,
            "version": "2.3",
            "data": {
                "vehicle_types": [
                    {"vehicle_type_id": "classic", "form_factor": "bicycle", "propulsion_type": "human"},
                    {"vehicle_type_id": "boost", "form_factor": "bicycle", "propulsion_type": "electric_assist"},
                    {"vehicle_type_id": "cosmo", "form_factor": "bicycle", "propulsion_type": "electric"},
                ]
            },
        }
    )
    assert normalise_station_status(doc, vehicle_types=types)["ebikes"].tolist() == [3]
    # Without the vehicle_types feed the electric share is unknown: <NA>, not 0.
    assert normalise_station_status(doc)["ebikes"].isna().all()
    assert normalise_station_status(doc)["is_returning"].tolist() == [False]


def test_v30_renamed_counts_and_rfc3339_times() -> None:
    doc = {
        "last_updated": "2023-03-01T11:46:40-08:00",
        "ttl": 30,
        "version": "3.0",
        "data": {
            "stations": [
                {
                    "station_id": "x",
                    "num_vehicles_available": 9,
                    "num_vehicles_disabled": 2,
                    "vehicle_types_available": [{"vehicle_type_id": "e", "count": 4}],
                    "num_docks_available": 1,
                    "num_docks_disabled": 0,
                    "is_installed": True,
                    "is_renting": True,
                    "is_returning": True,
                    "last_reported": "2023-03-01T19:45:00Z",
                    "num_bikes_available": 99,  # not a v3.0 field: ignored
                }
            ]
        },
    }
    frame = normalise_station_status(doc, vehicle_types={"e": "electric_assist"})
    row = frame.iloc[0]
    assert (row["bikes"], row["bikes_disabled"], row["ebikes"], row["docks"]) == (9, 2, 4, 1)
    assert row["last_updated"] == T0_TS
    assert row["last_reported"] == pd.Timestamp("2023-03-01T19:45:00Z")


def test_velib_bikes_available_types_list() -> None:
    doc = {
        "lastUpdatedOther": 1,
        "last_updated": T0,
        "ttl": 3600,
        "data": {
            "stations": [
                {
                    "stationCode": "16107",
                    "station_id": 213688169,
                    "num_bikes_available": 6,
                    "numBikesAvailable": 6,
                    "num_bikes_available_types": [{"mechanical": 2}, {"ebike": 4}],
                    "num_docks_available": 29,
                    "is_installed": 1,
                    "is_returning": 1,
                    "is_renting": 1,
                    "last_reported": T0,
                }
            ]
        },
    }
    frame = normalise_station_status(doc)
    assert frame["station_id"].tolist() == ["213688169"]
    assert frame["ebikes"].tolist() == [4]
    assert frame["bikes"].tolist() == [6]


def test_station_without_id_is_kept_for_the_contract() -> None:
    doc = v10_status()
    del doc["data"]["stations"][1]["station_id"]
    frame = normalise_station_status(doc)
    assert len(frame) == 2
    assert frame["station_id"].isna().tolist() == [False, True]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"ttl": 1, "data": {"stations": []}}, "no last_updated"),
        ({"last_updated": "soon", "data": {"stations": []}}, "last_updated"),
        ({"last_updated": T0, "ttl": 1}, "data"),
        ({"last_updated": T0, "data": {"stations": {"a": 1}}}, "data.stations must be a list"),
        ({"last_updated": T0, "data": {"stations": [1]}}, "station entry 0"),
        ({"last_updated": T0, "version": "9.0", "data": {"stations": []}}, "unsupported GBFS version"),
        ({"last_updated": T0, "version": 2.3, "data": {"stations": []}}, "version must be a string"),
    ],
)
def test_structurally_broken_documents_raise(doc: object, message: str) -> None:
    with pytest.raises(FeedFormatError, match=message):
        normalise_station_status(doc)  # type: ignore[arg-type]


def test_detect_version_and_last_updated_forms() -> None:
    assert detect_version({"version": "2.1-RC"}) == "2.1"
    assert detect_version({"version": "3.1-RC2"}) == "3.0"
    assert detect_version({"version": "1.0"}) == "1.0"
    assert feed_last_updated({"last_updated": T0}) == T0_TS
    assert feed_last_updated({"last_updated": "2023-03-01T19:46:40Z"}) == T0_TS
    assert feed_last_updated({"last_updated": "2023-03-01T20:46:40+01:00"}) == T0_TS
    assert feed_last_updated({"last_updated": T0 + 0.5}) == T0_TS + pd.Timedelta(milliseconds=500)
    with pytest.raises(FeedFormatError, match="last_updated"):
        feed_last_updated({"last_updated": True})


def test_station_information_v11_and_v30() -> None:
    v11 = {
        "last_updated": T0,
        "ttl": 0,
        "data": {
            "stations": [
                {
                    "station_id": "a",
                    "name": "Market St",
                    "short_name": "SF-1",
                    "capacity": 19,
                    "lat": 37.7,
                    "lon": -122.4,
                    "region_id": 3,
                    "rental_methods": ["KEY"],
                },
                {"station_id": "b", "name": "No capacity", "lat": "37.8", "lon": -122.3},
            ]
        },
    }
    frame = normalise_station_information(v11)
    assert list(frame.columns) == list(INFORMATION_COLUMNS)
    assert frame["region_id"].tolist()[0] == "3"
    assert frame["capacity"].iloc[0] == 19 and frame["capacity"].isna().iloc[1]
    assert frame["lat"].tolist() == [37.7, 37.8]
    assert frame["short_name"].isna().iloc[1]

    v30 = {
        "last_updated": "2023-03-01T19:46:40Z",
        "ttl": 0,
        "version": "3.0",
        "data": {
            "stations": [
                {
                    "station_id": "a",
                    "name": [{"text": "Rue", "language": "fr"}, {"text": "Street", "language": "en"}],
                    "short_name": [{"text": "R1", "language": "fr"}],
                    "lat": 48.8,
                    "lon": 2.3,
                    "capacity": 20,
                }
            ]
        },
    }
    assert normalise_station_information(v30, language="en")["name"].tolist() == ["Street"]
    assert normalise_station_information(v30)["name"].tolist() == ["Rue"]
    assert normalise_station_information(v30, language="en")["short_name"].tolist() == ["R1"]


def test_system_information_v11_and_v30() -> None:
    v11 = {
        "last_updated": T0,
        "ttl": 0,
        "data": {"system_id": "fgb", "language": "en", "name": "Bay Wheels", "timezone": "America/Los_Angeles"},
    }
    assert normalise_system_information(v11) == {
        "system_id": "fgb",
        "name": "Bay Wheels",
        "timezone": "America/Los_Angeles",
        "language": "en",
        "last_updated": T0_TS,
    }
    v30 = {
        "last_updated": "2023-03-01T19:46:40Z",
        "ttl": 0,
        "version": "3.0",
        "data": {
            "system_id": "velib",
            "languages": ["fr", "en"],
            "name": [{"text": "Vélib' Métropole", "language": "fr"}, {"text": "Velib", "language": "en"}],
            "timezone": "Europe/Paris",
            "opening_hours": "24/7",
            "feed_contact_email": "x@example.org",
        },
    }
    info = normalise_system_information(v30)
    assert (info["language"], info["name"], info["timezone"]) == ("fr", "Vélib' Métropole", "Europe/Paris")


def test_wrong_types_and_conversions_are_reported_apart_from_absent_fields() -> None:
    doc = v10_status()
    doc["version"] = "2.3"
    a, b = doc["data"]["stations"]
    a.update(num_bikes_available="many", num_docks_available="7", is_renting="true", num_bikes_disabled=2.5)
    b.update(num_bikes_available=True, num_docks_available=4.0, is_installed=2, last_reported="soon")
    read = read_station_status(doc)
    frame = read.frame
    assert frame["bikes"].isna().all() and frame["bikes_disabled"].isna().iloc[0]
    assert frame["docks"].tolist() == [7, 4]
    assert frame["is_renting"].iloc[0] and pd.isna(frame["is_installed"].iloc[1])
    assert read.wrong_type == {
        "bikes": {0: "many", 1: True},
        "bikes_disabled": {0: 2.5},
        "is_installed": {1: 2},
        "last_reported": {1: "soon"},
    }
    assert read.converted == {"docks": 2, "is_renting": 1}
    assert "ebikes" not in read.wrong_type  # absent is not a wrong type
    pd.testing.assert_frame_equal(normalise_station_status(doc), frame)


@pytest.mark.parametrize("huge", [10**15, 10**18, 10**20, 1e18, -(10**15), "1000000000000000", "33658-09-27T01:46:40Z"])
def test_a_time_outside_the_readable_range_is_a_wrong_type_not_a_crash(huge: object) -> None:
    doc = v10_status()
    doc["data"]["stations"][1]["last_reported"] = huge
    read = read_station_status(doc)
    assert read.frame["last_reported"].iloc[0] == T0_TS - pd.Timedelta(seconds=60)
    assert pd.isna(read.frame["last_reported"].iloc[1])
    assert read.wrong_type == {"last_reported": {1: huge}}


def test_a_count_beyond_64_bits_is_a_wrong_type_not_a_crash() -> None:
    doc = v10_status()
    doc["data"]["stations"][0]["num_bikes_available"] = 10**20
    read = read_station_status(doc)
    assert pd.isna(read.frame["bikes"].iloc[0]) and read.frame["bikes"].iloc[1] == 0
    assert read.wrong_type == {"bikes": {0: 10**20}}


def test_a_last_updated_outside_the_readable_range_is_a_format_error() -> None:
    with pytest.raises(FeedFormatError, match="last_updated"):
        feed_last_updated({"last_updated": 10**15, "data": {}})


def test_station_information_reports_wrong_types() -> None:
    doc = {
        "last_updated": T0,
        "ttl": 0,
        "data": {
            "stations": [
                {"station_id": "a", "name": "A", "capacity": "12", "lat": "37.7", "lon": -122.4},
                {"station_id": "b", "name": {"en": "B"}, "capacity": "big", "lat": True, "lon": -122.4},
            ]
        },
    }
    read = read_station_information(doc)
    assert read.frame["capacity"].iloc[0] == 12 and read.frame["lat"].iloc[0] == 37.7
    assert read.wrong_type == {"name": {1: {"en": "B"}}, "capacity": {1: "big"}, "lat": {1: True}}
    assert read.converted == {"capacity": 1, "lat": 1}
