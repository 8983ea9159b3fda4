"""deltalake storage options → the pyarrow filesystem the store lists tables with.

The end-to-end proof (listing, `meshinsights tables/sql/export` on moto S3 and Azurite) is in
tests/integration/test_object_storage.py; these check the mapping rules themselves.
"""

from __future__ import annotations

import pytest
from pyarrow import fs as pafs

from meshinsights.errors import ConfigError
from meshinsights.store.filesystems import azure_arguments, filesystem_for, s3_arguments


def test_s3_options_any_case_and_alias_map_to_pyarrow_arguments():
    args = s3_arguments(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "aws_access_key_id": "AK",
            "Secret_Access_Key": "SK",
            "region": "eu-west-1",
        },
        env={},
    )
    assert args == {
        "access_key": "AK",
        "secret_key": "SK",
        "region": "eu-west-1",
        "endpoint_override": "127.0.0.1:9000",
        "scheme": "http",
    }


def test_s3_options_fall_back_to_the_environment_and_explicit_options_win():
    env = {
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "https://minio.local",
    }
    args = s3_arguments({"aws_region": "eu-north-1"}, env=env)
    assert args["access_key"] == "env-key" and args["secret_key"] == "env-secret"
    assert args["region"] == "eu-north-1"
    assert (args["endpoint_override"], args["scheme"]) == ("minio.local", "https")
    assert s3_arguments({}, env={}) == {}  # AWS's own credential chain then applies


def test_azure_endpoint_account_and_key_from_azurite_style_options():
    args, base = azure_arguments(
        "az://lake/run-1",
        {
            "azure_storage_account_name": "devstoreaccount1",
            "azure_storage_account_key": "k==",
            "azure_endpoint": "http://127.0.0.1:10000/devstoreaccount1",
            "allow_http": "true",
        },
        env={},
    )
    assert base == "lake/run-1"
    assert args == {
        "account_name": "devstoreaccount1",
        "account_key": "k==",
        "blob_storage_authority": "127.0.0.1:10000",
        "blob_storage_scheme": "http",
        "dfs_storage_authority": "127.0.0.1:10000",
        "dfs_storage_scheme": "http",
    }


def test_azure_account_from_an_abfss_uri_and_sas_token():
    args, base = azure_arguments(
        "abfss://lake@acct.dfs.core.windows.net/meshinsights/", {"sas_token": "sv=x"}, env={}
    )
    assert base == "lake/meshinsights"
    assert args == {"account_name": "acct", "sas_token": "sv=x"}


def test_azure_emulator_flag_uses_azurites_well_known_account():
    args, _ = azure_arguments("az://lake", {"azure_storage_use_emulator": "true"}, env={})
    assert args["account_name"] == "devstoreaccount1"
    assert args["blob_storage_authority"] == "127.0.0.1:10000"


def test_azure_without_an_account_names_the_option_to_set():
    with pytest.raises(ConfigError, match="azure_storage_account_name"):
        azure_arguments("az://lake/x", {}, env={})


def test_local_roots(tmp_path):
    fs, base = filesystem_for(str(tmp_path), {})
    assert isinstance(fs, pafs.LocalFileSystem) and base == str(tmp_path)
    fs, base = filesystem_for(f"file://{tmp_path}", {})
    assert isinstance(fs, pafs.LocalFileSystem) and base == str(tmp_path)
