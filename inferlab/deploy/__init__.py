"""inferlab.deploy"""
